// Connecting GitHub in the sandbox: the Runners page's "Connect GitHub" goes through the GitHub
// double's install page and back, the installation and its repositories appear, and a sample
// workflow's job goes queued → running → succeeded on the Jobs page while free minutes drop.
import { expect, test } from "@playwright/test";
import { signUp, uniqueEmail, waitForHydration, watchConsole } from "./helpers";

test.skip(!!process.env.BASE_URL, "the GitHub double exists only in the sandbox");

const password = "connect password 1";

test("connect GitHub in the sandbox, then run a sample workflow and watch it finish", async ({ page }) => {
  test.setTimeout(90_000);
  const problems = watchConsole(page);
  const email = uniqueEmail("connect");
  const account = `org-${Date.now().toString(36)}${Math.floor(Math.random() * 1000)}`;
  await signUp(page, "Connect Co", email, password);
  await page.getByRole("link", { name: "Runners" }).click();
  await expect(page.getByRole("heading", { name: "Runners" })).toBeVisible();
  await page.getByTestId("connect-github").click();

  // The sandbox's stand-in for github.com.
  await expect(page.getByRole("heading", { name: "Install Tenki" })).toBeVisible();
  await expect(page.getByText("Sandbox GitHub")).toBeVisible();
  await page.screenshot({ path: "screenshots/github-install.png", fullPage: true });
  await page.getByLabel("Organization").fill(account);
  await page.getByLabel("Repositories").fill("api, web");
  await page.getByRole("button", { name: "Install" }).click();

  // Tenki did the work on /github/setup and shows the outcome on a page of its own.
  await expect(page).toHaveURL(/\/github\/connected\?/);
  await expect(page.getByTestId("github-connected")).toContainText(account);
  await waitForHydration(page);
  await page.screenshot({ path: "screenshots/github-connected.png", fullPage: true });
  await page.getByRole("link", { name: "Back to Runners" }).click();

  const installation = page.getByTestId("installation").filter({ hasText: account });
  await expect(async () => {
    await page.reload();
    await expect(installation.getByTestId("repositories")).toHaveText(`${account}/api, ${account}/web`, { timeout: 1_000 });
  }).toPass({ timeout: 15_000 });
  await expect(installation).toContainText("active");
  await page.screenshot({ path: "screenshots/runners-connected.png", fullPage: true });

  await installation.getByLabel("Repository").selectOption(`${account}/web`);
  await installation.getByRole("button", { name: "Run a sample workflow" }).click();
  await expect(page).toHaveURL(/\/jobs$/);
  const row = page.locator("tr", { hasText: `${account}/web` });
  // The double holds the job queued for 8 s, then running for 10 s.
  await expect(row.getByTestId("job-status")).toHaveText("queued", { timeout: 8_000 });
  await waitForHydration(page);
  // Live refresh moves the row along by itself.
  await expect(row.getByTestId("job-status")).toHaveText("running", { timeout: 15_000 });
  await expect(row.getByTestId("job-status")).toHaveText("succeeded", { timeout: 20_000 });
  await expect(row).toContainText("Sample workflow");
  await page.screenshot({ path: "screenshots/jobs-sample.png", fullPage: true });

  // Ten seconds on 4 vCPUs: one billable minute, two free minutes.
  await page.getByRole("link", { name: "Overview" }).click();
  await expect(page.getByTestId("free-minutes-left")).toHaveText("998");
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
