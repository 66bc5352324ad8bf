// The Usage page and the Overview's live free minutes, with jobs metered by the real metering
// code (through `tenki demo` and `tenki admin meter-job`). Local only: they need the binary.
import { expect, test } from "@playwright/test";
import { readFileSync } from "node:fs";
import { importIntoKratos, signIn, signUp, tenki, uniqueEmail, watchConsole } from "./helpers";

test.skip(!!process.env.BASE_URL, "needs the locally built tenki binary");

const password = "usage password 1";

test("the demo workspace's Usage page shows the chart, the per-label table and a CSV row per job", async ({ page }) => {
  const problems = watchConsole(page);
  const email = uniqueEmail("demo");
  const output = tenki("demo", "--email", email, "--password", password);
  expect(output).toContain("demo workspace ready");

  await importIntoKratos(page.request, email, password);
  await signIn(page, email, password);
  await expect(page.getByRole("heading", { name: "Overview" })).toBeVisible();
  await page.getByRole("link", { name: "Usage" }).click();
  await expect(page.getByRole("heading", { name: "Usage" })).toBeVisible();

  for (const measure of ["minutes", "cost"]) {
    const chart = page.getByTestId(`usage-chart-${measure}`);
    await expect(chart).toBeVisible();
    expect(await chart.locator("rect").count()).toBeGreaterThan(5);
  }
  await expect(page.getByTestId("usage-chart-cost")).toContainText("$");
  const labelRows = page.getByTestId("usage-by-label").locator("tbody tr");
  expect(await labelRows.count()).toBeGreaterThanOrEqual(3);
  await expect(page.getByTestId("usage-by-label")).toContainText("tenki-standard-2c");
  await page.screenshot({ path: "screenshots/usage.png", fullPage: true });

  // Jobs in the month, as the table counts them.
  const jobCells = await labelRows.locator("td:nth-child(2)").allInnerTexts();
  const jobs = jobCells.map((text) => Number(text.replace(/,/g, ""))).reduce((a, b) => a + b, 0);
  expect(jobs).toBeGreaterThan(0);

  const [download] = await Promise.all([
    page.waitForEvent("download"),
    page.getByRole("link", { name: "Export CSV" }).click(),
  ]);
  const csv = readFileSync(await download.path(), "utf8").trim().split("\n");
  expect(csv[0]).toBe(
    "job_key,started_at,completed_at,repository,workflow,label,premium,vcpus,run_seconds,billed_minutes,free_minutes_used_2vcpu_minutes,price_per_minute_usd,discount_percent,currency,amount_usd,amount_millionths_of_a_cent,github_url",
  );
  expect(csv.length - 1).toBe(jobs);
  // The demo's jobs came through GitHub's deliveries: each row links to the job's page.
  for (const row of csv.slice(1)) expect(row).toMatch(/,https:\/\/github\.com\/acme\/[a-z]+\/actions\/runs\/\d+\/job\/\d+$/);
  expect(problems).toEqual([]);
});

test("the Overview's free minutes drop within seconds of a job being metered, without a reload", async ({ page }) => {
  const problems = watchConsole(page);
  const email = uniqueEmail("live");
  await signUp(page, "Live Co", email, password);
  await expect(page.getByTestId("free-minutes-left")).toHaveText("1,000");
  await expect(page.getByTestId("month-to-date-cost")).toHaveText("$0.00");

  // 10 minutes on 4 vCPUs use 20 free minutes.
  tenki("admin", "meter-job", "--email", email, "--label", "tenki-standard-4c", "--seconds", "600");
  await expect(page.getByTestId("free-minutes-left")).toHaveText("980", { timeout: 5_000 });
  expect(problems).toEqual([]);
});

test("used-up free minutes show the add-a-card notice and the month's cost", async ({ page }) => {
  const email = uniqueEmail("exhausted");
  await signUp(page, "Busy Co", email, password);
  tenki("admin", "meter-job", "--email", email, "--label", "tenki-standard-2c", "--seconds", "60600");
  await page.reload();
  await expect(page.getByTestId("free-minutes-left")).toHaveText("0");
  await expect(page.getByTestId("free-minutes-exhausted")).toContainText("Add a card");
  // 1,010 minutes on 2c: 1,000 free, 10 paid at $0.003.
  await expect(page.getByTestId("month-to-date-cost")).toHaveText("$0.03");
  await page.screenshot({ path: "screenshots/overview-exhausted.png", fullPage: true });
});

test("the Usage page shows what the storage service measured and the month's projected storage cost", async ({ page, request }) => {
  const problems = watchConsole(page);
  const email = uniqueEmail("storage");
  await signUp(page, "Storage Co", email, password);
  for (let n = 0; n < 3; n++) {
    tenki("admin", "meter-job", "--email", email, "--label", "tenki-standard-2c", "--seconds", "120");
  }
  // The sandbox's storage service sends today's samples through the internal endpoint now
  // (it also does every hour): 40 MB of artifacts and 250 MB of cache per job of the last 30 days.
  const sent = await request.post("/sandbox/storage/send-samples");
  expect(sent.status()).toBe(200);

  await page.goto("/usage");
  const storage = page.getByTestId("storage");
  await expect(storage).toContainText("0.12 GB of artifacts and data");
  await expect(storage).toContainText("dependency cache 0.75 GB of 10.00 GB included (never billed)");
  await expect(storage).toContainText("storage projected for this month: $");
  await storage.scrollIntoViewIfNeeded();
  await page.screenshot({ path: "screenshots/usage-storage.png", fullPage: true });
  expect(problems).toEqual([]);
});

/** "November 2026" for the month `monthsBack` before this one, in UTC as the server counts. */
function monthName(monthsBack: number): string {
  const now = new Date();
  const month = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - monthsBack, 1));
  return month.toLocaleString("en-US", { month: "long", year: "numeric", timeZone: "UTC" });
}

test("months read by name, stop at this one, say Total once over, and every table has a total row", async ({ page }) => {
  const problems = watchConsole(page);
  const email = uniqueEmail("months");
  tenki("demo", "--email", email, "--password", password);
  await importIntoKratos(page.request, email, password);
  await signIn(page, email, password);
  await expect(page.getByRole("heading", { name: "Overview" })).toBeVisible();
  await page.goto("/usage");

  // This month: figures so far, a projection, no way into the future.
  await expect(page.getByTestId("usage-month")).toHaveText(monthName(0));
  await expect(page.getByText("Cost so far")).toBeVisible();
  await expect(page.getByTestId("usage-projected")).toBeVisible();
  await expect(page.getByTestId("usage-next-disabled")).toBeVisible();
  await expect(page.getByRole("link", { name: "Next →" })).toHaveCount(0);
  await expect(page.getByTestId("free-minutes-explained")).toContainText("2-vCPU minutes");

  // Each table's total row adds up its lines.
  for (const table of ["usage-by-label", "usage-by-repository", "usage-by-workflow"]) {
    const jobs = await page.getByTestId(table).locator("tbody td:nth-child(2)").allInnerTexts();
    const total = await page.getByTestId(table).locator("tfoot td:nth-child(2)").innerText();
    const sum = jobs.map((text) => Number(text.replace(/,/g, ""))).reduce((a, b) => a + b, 0);
    expect(Number(total.replace(/,/g, "")), table).toBe(sum);
    await expect(page.getByTestId(table).locator("tfoot td").first()).toHaveText("Total");
  }

  // The charts' values: reachable by keyboard, told apart by texture as well as colour, and as
  // a table.
  const bar = page.getByTestId("usage-chart-minutes").locator("rect[tabindex='0']").first();
  await bar.focus();
  await expect(bar).toBeFocused();
  await expect(bar).toHaveAttribute("aria-label", /^Day \d+: .+ · \d+ min · \$/);
  expect(await page.getByTestId("usage-chart-minutes").locator("pattern").count()).toBeGreaterThan(1);
  await page.screenshot({ path: "screenshots/usage-this-month.png", fullPage: true });
  await page.getByText("Daily values as a table").click();
  const dailyRows = page.getByTestId("usage-daily-table").locator("tbody tr");
  expect(await dailyRows.count()).toBe(
    await page.getByTestId("usage-chart-minutes").locator("rect[tabindex='0']").count(),
  );

  // Last month is over: its cost is the total, no projection, and Next leads back here.
  await page.getByRole("link", { name: "← Previous" }).click();
  await expect(page.getByTestId("usage-month")).toHaveText(monthName(1));
  await expect(page.getByText("Total cost")).toBeVisible();
  await expect(page.getByTestId("usage-projected")).toHaveCount(0);
  await expect(page.getByRole("link", { name: "Next →" })).toBeVisible();
  await page.screenshot({ path: "screenshots/usage-last-month.png", fullPage: true });

  // A month with no jobs says so instead of drawing an axis of $0.00.
  await page.goto("/usage?month=2020-01");
  await expect(page.getByTestId("usage-month")).toHaveText("January 2020");
  await expect(page.getByTestId("usage-chart-cost-empty")).toHaveText("No jobs ran in January 2020.");

  expect(problems).toEqual([]);

  // A month that has not begun is refused (422) with a way back.
  const refused = await page.goto("/usage?month=2099-01");
  expect(refused?.status()).toBe(422);
  await expect(page.getByRole("alert")).toContainText("January 2099 has not started yet.");
  await page.getByRole("link", { name: "Usage this month →" }).click();
  await expect(page.getByTestId("usage-month")).toHaveText(monthName(0));
});

test("a month of free minutes only says there is nothing to pay, and the Usage page fits a phone", async ({ page }) => {
  const problems = watchConsole(page);
  const email = uniqueEmail("free-only");
  await signUp(page, "Free Co", email, password);
  tenki("admin", "meter-job", "--email", email, "--label", "tenki-standard-2c", "--seconds", "600");
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto("/usage");
  await expect(page.getByTestId("usage-chart-cost-empty")).toHaveText(
    `Nothing to pay in ${monthName(0)}: every minute was free.`,
  );
  await expect(page.getByTestId("usage-chart-minutes")).toBeVisible();
  // The chart opens at the month's latest days (today's bar), the tables keep their cost.
  await page.getByText("Minutes per day, by runner label").scrollIntoViewIfNeeded();
  await expect(page.getByTestId("usage-chart-minutes").locator("text").last()).toBeInViewport();
  await page.getByRole("heading", { name: "By runner label", exact: true }).scrollIntoViewIfNeeded();
  await expect(page.getByTestId("usage-by-label").getByRole("columnheader", { name: "Cost" })).toBeInViewport();
  const pageWidth = await page.evaluate(() => document.documentElement.scrollWidth);
  expect(pageWidth, "nothing sticks out of the page sideways").toBeLessThanOrEqual(390);
  await page.screenshot({ path: "screenshots/usage-phone.png", fullPage: true });
  expect(problems).toEqual([]);
});
