// The Runners and Jobs pages, fed by signed webhook deliveries built from the real GitHub
// fixtures and posted to the real intake. Local only: the installation of the fixtures is linked
// with support's `tenki admin link-installation`, which needs the binary.
import { expect, test } from "@playwright/test";
import { deliverToGithubWebhook, githubFixture, signUp, tenki, uniqueEmail, waitForHydration, watchConsole } from "./helpers";

test.skip(!!process.env.BASE_URL, "needs the locally built tenki binary");

const password = "runners password 1";

test("the Runners page shows the catalog with prices, the runs-on line and linked installations", async ({ page, request }) => {
  const problems = watchConsole(page);
  const email = uniqueEmail("runners");
  await signUp(page, "Runner Co", email, password);
  await page.getByRole("link", { name: "Runners" }).click();
  await expect(page.getByRole("heading", { name: "Runners", exact: true })).toBeVisible();
  await expect(page.getByTestId("runs-on-snippet")).toHaveText("runs-on: tenki-standard-4c");
  // Copy: a handler of the hydrated page (the Content-Security-Policy allows no inline script).
  await page.context().grantPermissions(["clipboard-read", "clipboard-write"]);
  await waitForHydration(page);
  await page.getByRole("button", { name: "Copy" }).click();
  await expect(page.getByRole("button", { name: "Copied" })).toBeVisible();
  expect(await page.evaluate(() => navigator.clipboard.readText())).toBe("runs-on: tenki-standard-4c");
  const catalog = page.getByTestId("catalog");
  await expect(catalog.locator("tbody tr")).toHaveCount(8);
  await expect(catalog.locator("tr", { hasText: "tenki-standard-2c" })).toContainText("$0.0030");
  await expect(catalog.locator("tr", { hasText: "tenki-standard-2c" })).toContainText("$0.0045");
  await expect(catalog.locator("tr", { hasText: "tenki-macos-m4-6c" })).toContainText("$0.1200");
  // Every label as the line to paste into a workflow.
  await expect(catalog.locator("tr", { hasText: "tenki-standard-8c" }).getByTestId("catalog-runs-on")).toHaveText(
    "runs-on: tenki-standard-8c",
  );
  await expect(page.getByTestId("installations")).toContainText("No GitHub installation is linked");
  await expect(page.getByTestId("connect-github")).toHaveText("Connect GitHub");

  const installationId = 100_000_000 + Math.floor(Math.random() * 800_000_000);
  tenki("admin", "link-installation", "--email", email, "--installation-id", String(installationId));
  const created = githubFixture("installation.created.json");
  created.installation.id = installationId;
  expect(await deliverToGithubWebhook(request, "installation", created)).toBe(202);
  await expect(async () => {
    await page.reload();
    await expect(page.getByTestId("installations")).toContainText(created.installation.account.login, { timeout: 1_000 });
  }).toPass({ timeout: 10_000 });
  await expect(page.getByTestId("installations")).toContainText(created.repositories[0].full_name);
  // Connected: connecting another account is the secondary action now.
  await expect(page.getByTestId("connect-github")).toHaveText("Connect another account");
  await page.screenshot({ path: "screenshots/runners.png", fullPage: true });

  // On a phone no label breaks at its hyphens and the prices stay on screen.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.getByRole("button", { name: "Copy" }).scrollIntoViewIfNeeded();
  await expect(page.getByRole("button", { name: "Copy" })).toBeInViewport({ ratio: 1 });
  await page.getByTestId("catalog").scrollIntoViewIfNeeded();
  for (const header of ["Per minute", "Premium"]) {
    const cell = page.getByTestId("catalog").getByRole("columnheader", { name: header });
    await expect(cell, header).toBeInViewport({ ratio: 1 });
  }
  const line = catalog.locator("tr", { hasText: "tenki-macos-m4-12c" }).getByTestId("catalog-runs-on");
  const box = await line.boundingBox();
  expect(box?.height ?? 99, "one line").toBeLessThan(24);
  expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
  await page.screenshot({ path: "screenshots/runners-phone.png", fullPage: true });
  expect(problems).toEqual([]);
});

test("a job goes queued → running → succeeded on the Jobs page; on a runner Tenki did not start it is not billed", async ({ page, request }) => {
  const problems = watchConsole(page);
  const email = uniqueEmail("jobs");
  await signUp(page, "Jobs Co", email, password);
  const installationId = 100_000_000 + Math.floor(Math.random() * 800_000_000);
  tenki("admin", "link-installation", "--email", email, "--installation-id", String(installationId));

  const jobId = 10_000_000_000 + Math.floor(Math.random() * 1_000_000_000);
  const now = Date.now();
  const delivery = (name: string, status: string) => {
    const body = githubFixture(name);
    body.action = status;
    body.installation = { id: installationId };
    Object.assign(body.workflow_job, {
      id: jobId,
      run_attempt: 1,
      status,
      labels: ["tenki-standard-2c"],
      workflow_name: "CI",
      created_at: new Date(now - 15 * 60_000).toISOString(),
      started_at: new Date(now - 12 * 60_000).toISOString(),
      completed_at: status === "completed" ? new Date(now - 2 * 60_000).toISOString() : null,
      conclusion: status === "completed" ? "success" : null,
    });
    return body;
  };

  // A full page load of the empty Jobs page: the rows must still appear when jobs arrive.
  await page.goto("/jobs");
  await expect(page.getByRole("heading", { name: "Jobs", exact: true })).toBeVisible();
  await expect(page.getByText("No jobs yet.")).toBeVisible();
  await waitForHydration(page);
  const row = page.locator(`tr[data-job="${jobId}:1"]`);

  expect(await deliverToGithubWebhook(request, "workflow_job", delivery("workflow_job.queued.json", "queued"))).toBe(202);
  // Admission admits it at once and asks for a runner: "starting" (this installation exists only
  // in Tenki's records, so the GitHub double never registers one).
  await expect(row.getByTestId("job-status")).toHaveText(/^(queued|starting)$/, { timeout: 10_000 });
  expect(await deliverToGithubWebhook(request, "workflow_job", delivery("workflow_job.in_progress.json", "in_progress"))).toBe(202);
  // GitHub's fixture names a GitHub-hosted runner, "GitHub Actions 5".
  await expect(row.getByTestId("job-status")).toContainText("running", { timeout: 10_000 });
  await expect(row.getByTestId("job-runner")).toHaveText("GitHub Actions 5");
  expect(
    await deliverToGithubWebhook(request, "workflow_job", delivery("workflow_job.completed.success.with-organization.json", "completed")),
  ).toBe(202);
  await expect(row.getByTestId("job-status")).toContainText("succeeded", { timeout: 10_000 });
  await expect(row).toContainText("10m 00s");
  // Only jobs on runners Tenki started for the workspace are billed (SPEC §6).
  await expect(row.getByTestId("not-billed-reason")).toHaveText(
    "not billed: it ran on a runner Tenki did not start (GitHub Actions 5)",
  );
  await expect(row).toContainText("—");
  await expect(page.getByTestId("job-stats")).toContainText("tenki-standard-2c");
  await page.screenshot({ path: "screenshots/jobs.png", fullPage: true });

  await page.getByRole("link", { name: "Overview" }).click();
  await expect(page.getByTestId("free-minutes-left")).toHaveText("1,000");
  expect(problems).toEqual([]);
});

test("a job cancelled while it waited shows why it is not billed and costs nothing", async ({ page, request }) => {
  const problems = watchConsole(page);
  const email = uniqueEmail("cancelled");
  await signUp(page, "Cancel Co", email, password);
  const installationId = 100_000_000 + Math.floor(Math.random() * 800_000_000);
  tenki("admin", "link-installation", "--email", email, "--installation-id", String(installationId));
  const jobId = 10_000_000_000 + Math.floor(Math.random() * 1_000_000_000);
  const created = Date.now() - 25 * 3_600_000;
  // GitHub cancels a self-hosted job after 24 h in the queue: no runner, no steps, and a
  // `started_at` it fills anyway.
  const body = githubFixture("workflow_job.completed.cancelled-while-queued.derived.json");
  body.installation = { id: installationId };
  Object.assign(body.workflow_job, {
    id: jobId,
    run_attempt: 1,
    labels: ["tenki-standard-64c"],
    workflow_name: "Nightly",
    created_at: new Date(created).toISOString(),
    started_at: new Date(created).toISOString(),
    completed_at: new Date(created + 24 * 3_600_000).toISOString(),
  });
  expect(await deliverToGithubWebhook(request, "workflow_job", body)).toBe(202);
  await page.goto("/jobs");
  await waitForHydration(page);
  const row = page.locator(`tr[data-job="${jobId}:1"]`);
  await expect(row.getByTestId("job-status")).toContainText("cancelled", { timeout: 10_000 });
  await expect(row.getByTestId("not-billed-reason")).toHaveText("not billed: cancelled before a runner took it");
  await expect(row.locator("td").last()).toHaveText("—");
  await expect(row.locator("td").nth(5)).toHaveText("—");
  await page.screenshot({ path: "screenshots/jobs-not-billed.png", fullPage: true });
  await page.getByRole("link", { name: "Overview" }).click();
  await expect(page.getByTestId("free-minutes-left")).toHaveText("1,000");
  expect(problems).toEqual([]);
});
