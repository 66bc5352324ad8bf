// The Jobs page as a job log: the demo's month of jobs (delivered through the GitHub intake by
// `tenki demo`), a page at a time, with links to GitHub, filters, and cards on a phone. Local
// only: they need the binary.
import { expect, type Locator, type Page, test } from "@playwright/test";
import { expectOverview, importIntoKratos, signIn, tenki, uniqueEmail, waitForHydration, watchConsole } from "./helpers";

test.skip(!!process.env.BASE_URL, "needs the locally built tenki binary");

const password = "jobs password 1";

/** A demo workspace; returns its e-mail and how many jobs the demo delivered. */
function demoWorkspace(prefix: string): { email: string; delivered: number } {
  const email = uniqueEmail(prefix);
  const output = tenki("demo", "--email", email, "--password", password);
  const match = /ready: (\d+) jobs/.exec(output);
  expect(match, output).not.toBeNull();
  return { email, delivered: Number(match?.[1]) };
}

async function jobIds(rows: Locator): Promise<string[]> {
  return rows.evaluateAll((elements) => elements.map((element) => element.getAttribute("data-job") ?? ""));
}

async function openJobs(page: Page, email: string): Promise<void> {
  await importIntoKratos(page.request, email, password);
  await signIn(page, email, password);
  await expectOverview(page);
  await page.getByRole("link", { name: "Jobs", exact: true }).click();
  await expect(page.getByRole("heading", { name: "Jobs", exact: true })).toBeVisible();
}

test("the demo's jobs are all on the Jobs page, newest first, a page at a time, each linked to its run on GitHub", async ({ page }) => {
  const problems = watchConsole(page);
  const { email, delivered } = demoWorkspace("jobs-demo");
  expect(delivered).toBeGreaterThan(300);
  await openJobs(page, email);
  await waitForHydration(page);

  const rows = page.getByTestId("jobs").locator("tbody tr");
  await expect(rows).toHaveCount(50);
  const first = rows.first();
  await expect(first.getByTestId("job-github-link")).toHaveAttribute(
    "href",
    /^https:\/\/github\.com\/acme\/(web|api|mobile|infra)\/actions\/runs\/\d+\/job\/\d+$/,
  );
  await expect(first.getByTestId("job-github-link")).toHaveAttribute("target", "_blank");
  await expect(first.getByTestId("job-where")).toHaveText(/^acme\/(web|api|mobile|infra) · (CI|Release|Nightly|Docs)$/);
  await expect(first.getByTestId("job-status-badge")).toHaveText(/^(succeeded|failed|cancelled)$/);
  await expect(first.getByTestId("job-when")).toHaveAttribute(
    "title",
    /^Queued \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC, started \d\d:\d\d:\d\d$/,
  );
  await expect(first.getByTestId("job-queue")).toHaveText(/^\d+s \+ \d+s$/);
  await expect(first.getByTestId("job-billed-minutes")).toHaveText(/^\d+$/);
  await expect(first.getByTestId("job-cost")).toHaveText(/^\$\d+\.\d{4}$/);
  // The demo's jobs ran on runners Tenki started: each names its runner.
  await expect(first.getByTestId("job-runner")).toHaveText(/^tenki-[0-9a-f]{8}-\d+-1-1$/);
  await expect(page.getByTestId("job-stats")).toContainText("tenki-standard-2c");
  await page.screenshot({ path: "screenshots/jobs-demo.png", fullPage: true });
  await page.getByTestId("jobs").scrollIntoViewIfNeeded();
  await page.screenshot({ path: "screenshots/jobs-demo-table.png" });

  // Page by page, newest first: every job the demo delivered once, none twice.
  const seen: string[] = [];
  let previousStarts: string[] = [];
  for (let pages = 0; pages < 40; pages += 1) {
    const ids = await jobIds(rows);
    seen.push(...ids);
    const starts = await rows.locator("time").evaluateAll((times) => times.map((t) => t.getAttribute("datetime") ?? ""));
    expect([...starts].sort().reverse(), "newest first").toEqual(starts);
    if (previousStarts.length > 0) expect(starts[0] <= previousStarts[previousStarts.length - 1]).toBe(true);
    previousStarts = starts;
    const older = page.getByTestId("older-jobs");
    if ((await older.count()) === 0) break;
    await older.click();
    await expect(page).toHaveURL(/before=\d+_\d+_1/);
    await expect(rows.first()).not.toHaveAttribute("data-job", ids[0]);
  }
  expect(new Set(seen).size).toBe(seen.length);
  expect(seen.length).toBe(delivered);
  await expect(page.getByRole("link", { name: "← Newest jobs" })).toBeVisible();
  expect(problems).toEqual([]);
});

test("the Jobs page filters by repository, label and status, marks what is active, and works without JavaScript", async ({ page, browser }) => {
  const problems = watchConsole(page);
  const { email } = demoWorkspace("jobs-filter");
  await openJobs(page, email);
  await waitForHydration(page);
  const rows = page.getByTestId("jobs").locator("tbody tr");

  const filters = page.getByTestId("job-filters");
  await filters.getByLabel("Repository").selectOption("acme/api");
  await filters.getByLabel("Label").selectOption("tenki-standard-2c");
  await filters.getByRole("button", { name: "Show jobs" }).click();
  await expect(page).toHaveURL(/repository=acme%2Fapi/);
  await expect(page).toHaveURL(/label=tenki-standard-2c/);
  await expect(rows.first()).toBeVisible();
  for (const where of await rows.getByTestId("job-where").allInnerTexts()) expect(where).toMatch(/^acme\/api · /);
  for (const label of await rows.locator("td:nth-child(3)").allInnerTexts()) expect(label).toBe("tenki-standard-2c");
  await expect(filters.getByLabel("Repository")).toHaveValue("acme/api");
  await expect(filters.getByLabel("Label")).toHaveValue("tenki-standard-2c");
  await expect(page.getByRole("link", { name: "Clear filters" })).toBeVisible();

  // A status keeps the other filters, and is marked as the one shown.
  const statuses = page.getByRole("navigation", { name: "Filter by status" });
  await statuses.getByRole("link", { name: "Completed" }).click();
  await expect(page).toHaveURL(/status=completed/);
  await expect(page).toHaveURL(/repository=acme\/api/);
  await expect(statuses.getByRole("link", { name: "Completed" })).toHaveAttribute("aria-current", "page");
  await expect(statuses.getByRole("link", { name: "All" })).not.toHaveAttribute("aria-current", "page");
  for (const where of await rows.getByTestId("job-where").allInnerTexts()) expect(where).toMatch(/^acme\/api · /);
  await statuses.getByRole("link", { name: "Running" }).click();
  await expect(page.getByText("No jobs match these filters.")).toBeVisible();
  await page.getByRole("link", { name: "Clear filters" }).click();
  await expect(page).toHaveURL(/\/jobs$/);
  await expect(rows).toHaveCount(50);
  await page.screenshot({ path: "screenshots/jobs-filtered.png", fullPage: true });

  // Without JavaScript the filters are a plain form and the page is served filtered.
  const cookies = await page.context().cookies();
  const plain = await browser.newContext({ javaScriptEnabled: false });
  await plain.addCookies(cookies);
  const noScript = await plain.newPage();
  await noScript.goto("/jobs");
  await noScript.getByLabel("Repository").selectOption("acme/web");
  await noScript.getByRole("button", { name: "Show jobs" }).click();
  await expect(noScript).toHaveURL(/repository=acme%2Fweb/);
  const plainRows = noScript.getByTestId("jobs").locator("tbody tr");
  await expect(plainRows.first()).toBeVisible();
  for (const where of await plainRows.getByTestId("job-where").allInnerTexts()) expect(where).toMatch(/^acme\/web · /);
  await plain.close();

  expect(problems).toEqual([]);

  // A made-up page position is refused in words (a 422), not with an error page.
  const refused = await page.goto("/jobs?before=yesterday");
  expect(refused?.status()).toBe(422);
  await expect(page.getByText('"yesterday" is not a place in the job list')).toBeVisible();
});

test("on a phone each job is a card and nothing is cut off", async ({ page }) => {
  const problems = watchConsole(page);
  const { email } = demoWorkspace("jobs-phone");
  await page.setViewportSize({ width: 390, height: 844 });
  await importIntoKratos(page.request, email, password);
  await signIn(page, email, password);
  await expectOverview(page);
  await page.goto("/jobs");
  await waitForHydration(page);
  await expect(page.getByTestId("jobs")).toBeHidden();
  const cards = page.getByTestId("job-card");
  await expect(cards).toHaveCount(50);
  const card = cards.first();
  await expect(card.getByTestId("job-github-link")).toBeVisible();
  await expect(card.getByTestId("job-status-badge")).toBeVisible();
  await expect(card.getByTestId("job-cost")).toHaveText(/^\$\d+\.\d{4}$/);
  expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
  await page.screenshot({ path: "screenshots/jobs-phone.png", fullPage: true });
  await card.scrollIntoViewIfNeeded();
  await page.screenshot({ path: "screenshots/jobs-phone-cards.png" });
  expect(problems).toEqual([]);
});
