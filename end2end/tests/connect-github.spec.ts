// Connecting GitHub in the sandbox: the Runners page's "Connect GitHub" goes through the GitHub
// double's install page and back, the installation and its repositories appear, and a sample
// workflow's job is admitted, runs on a runner Tenki starts on the Kubernetes double and
// succeeds, while free minutes drop; a job that cannot start says why until the cause is gone.
import { expect, type Locator, type Page, test } from "@playwright/test";
import { signUp, tenki, uniqueEmail, waitForHydration, watchConsole } from "./helpers";

test.skip(!!process.env.BASE_URL, "the GitHub double exists only in the sandbox");

const password = "connect password 1";

/** Connects GitHub through the double's install page for `account` with repositories api and web. */
async function connectGitHub(page: Page, account: string, screenshots: boolean): Promise<Locator> {
  await page.getByRole("link", { name: "Runners" }).click();
  await expect(page.getByRole("heading", { name: "Runners", exact: true })).toBeVisible();
  await page.getByTestId("connect-github").click();

  // The sandbox's stand-in for github.com.
  await expect(page.getByRole("heading", { name: "Install Tenki" })).toBeVisible();
  await expect(page.getByText("Sandbox GitHub")).toBeVisible();
  if (screenshots) await page.screenshot({ path: "screenshots/github-install.png", fullPage: true });
  await page.getByLabel("Organization").fill(account);
  await page.getByLabel("Repositories").fill("api, web");
  await page.getByRole("button", { name: "Install" }).click();

  // Tenki did the work on /github/setup and shows the outcome on a page of its own.
  await expect(page).toHaveURL(/\/github\/connected\?/);
  await expect(page.getByTestId("github-connected")).toContainText(account);
  await waitForHydration(page);
  if (screenshots) await page.screenshot({ path: "screenshots/github-connected.png", fullPage: true });
  await page.getByRole("link", { name: "Back to Runners" }).click();

  const installation = page.getByTestId("installation").filter({ hasText: account });
  await expect(async () => {
    await page.reload();
    await expect(installation.getByTestId("repositories")).toHaveText(`${account}/api, ${account}/web`, { timeout: 1_000 });
  }).toPass({ timeout: 15_000 });
  await expect(installation).toContainText("active");
  return installation;
}

function uniqueAccount(): string {
  return `org-${Date.now().toString(36)}${Math.floor(Math.random() * 1000)}`;
}

test("connect GitHub in the sandbox, then run a sample workflow on a Tenki runner and watch it finish", async ({ page }) => {
  test.setTimeout(90_000);
  const problems = watchConsole(page);
  const email = uniqueEmail("connect");
  const account = uniqueAccount();
  await signUp(page, "Connect Co", email, password);
  // A new workspace is shown the way to its first job.
  const steps = page.getByTestId("getting-started-step");
  await expect(page.getByTestId("getting-started")).toContainText("0 of 3 done");
  await expect(steps.nth(0)).toHaveAttribute("data-done", "false");
  await expect(page.getByTestId("runs-on-line")).toHaveText("runs-on: tenki-standard-2c");
  await page.screenshot({ path: "screenshots/overview-getting-started.png", fullPage: true });
  const installation = await connectGitHub(page, account, true);
  await page.getByRole("link", { name: "Overview" }).click();
  await expect(page.getByTestId("getting-started")).toContainText("1 of 3 done");
  await expect(steps.nth(0)).toHaveAttribute("data-done", "true");
  await expect(steps.nth(1)).toHaveAttribute("data-done", "false");
  await page.getByRole("link", { name: "Runners" }).click();
  await page.screenshot({ path: "screenshots/runners-connected.png", fullPage: true });

  await installation.getByLabel("Repository").selectOption(`${account}/web`);
  await installation.getByLabel("Seconds each").fill("12");
  await installation.getByRole("button", { name: "Run a sample workflow" }).click();
  await expect(page).toHaveURL(/\/jobs$/);
  const row = page.locator("tr", { hasText: `${account}/web` });
  await waitForHydration(page);
  // Admitted, a runner started on the Kubernetes double, the runner took the job: the live
  // refresh moves the row along by itself, and names the runner.
  await expect(row.getByTestId("job-status")).toContainText("running", { timeout: 30_000 });
  await expect(row.getByTestId("job-runner")).toHaveText(/^tenki-[0-9a-f]{8}-\d+-1-1$/);
  await page.screenshot({ path: "screenshots/jobs-running.png", fullPage: true });

  // The Runners page lists the live runner.
  await page.getByRole("link", { name: "Runners" }).click();
  const runner = page.getByTestId("live-runners").locator("tr", { hasText: "tenki-standard-4c" });
  await expect(runner.getByTestId("runner-state")).toHaveText("running");
  await expect(runner).toContainText(`${account}/web · Sample workflow`);
  await page.screenshot({ path: "screenshots/runners-live.png", fullPage: true });

  await page.getByRole("link", { name: "Jobs", exact: true }).click();
  await expect(row.getByTestId("job-status")).toContainText("succeeded", { timeout: 30_000 });
  await expect(row).toContainText("Sample workflow");
  await page.screenshot({ path: "screenshots/jobs-sample.png", fullPage: true });

  // Twelve seconds on 4 vCPUs: one billable minute, two free minutes.
  await page.getByRole("link", { name: "Overview" }).click();
  await expect(page.getByTestId("free-minutes-left")).toHaveText("998");
  // Every step done: the checklist is gone.
  await expect(page.getByTestId("getting-started")).toHaveCount(0);
  expect(problems).toEqual([]);
});

test("a macOS job without the add-on says why it waits and starts once the add-on is on", async ({ page }) => {
  test.setTimeout(90_000);
  const problems = watchConsole(page);
  const email = uniqueEmail("blocked");
  const account = uniqueAccount();
  await signUp(page, "Blocked Co", email, password);
  const installation = await connectGitHub(page, account, false);
  await installation.getByLabel("Label").selectOption("tenki-macos-m4-6c");
  await installation.getByLabel("Seconds each").fill("3");
  await installation.getByRole("button", { name: "Run a sample workflow" }).click();
  await expect(page).toHaveURL(/\/jobs$/);
  await waitForHydration(page);
  const row = page.locator("tr", { hasText: `${account}/api` });
  await expect(row.getByTestId("job-status")).toContainText("blocked", { timeout: 30_000 });
  await expect(row.getByTestId("waiting-reason")).toHaveText("blocked: macOS needs the macOS add-on");
  await page.screenshot({ path: "screenshots/jobs-blocked.png", fullPage: true });

  await page.getByRole("link", { name: "Overview" }).click();
  await expect(page.getByTestId("jobs-now")).toContainText("1 blocked: macOS needs the macOS add-on");
  await page.screenshot({ path: "screenshots/overview-blocked.png", fullPage: true });

  // Support turns the add-on on (the payments issue sells it): the job starts by itself.
  tenki("admin", "set-addon", "--email", email, "--addon", "macos", "--on");
  await page.getByRole("link", { name: "Jobs", exact: true }).click();
  await expect(row.getByTestId("job-status")).toContainText("succeeded", { timeout: 60_000 });
  await expect(row.getByTestId("waiting-reason")).toHaveCount(0);
  expect(problems).toEqual([]);
});

test("a forged or expired return from GitHub is refused with a clear page", async ({ page }) => {
  const problems = watchConsole(page);
  await signUp(page, "Forged Co", uniqueEmail("forged"), password);
  await page.goto("/github/setup?installation_id=123&setup_action=install&code=nope&state=tampered.state");
  await expect(page.getByTestId("github-setup-refused")).toContainText("not valid");
  await expect(page.getByTestId("github-setup-refused")).toContainText("Start again from the Runners page");
  await waitForHydration(page);
  await page.screenshot({ path: "screenshots/github-refused.png", fullPage: true });
  // The refusal is a 400 page, which the browser logs; nothing else may be.
  expect(problems.filter((p) => !p.includes("400"))).toEqual([]);
});
