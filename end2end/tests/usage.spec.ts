// The Usage page and the Overview's live free minutes, with jobs metered by the real metering
// code (through `tenki demo` and `tenki admin meter-job`). Local only: they need the binary.
import { expect, test } from "@playwright/test";
import { readFileSync } from "node:fs";
import { signIn, signUp, tenki, uniqueEmail, watchConsole } from "./helpers";

test.skip(!!process.env.BASE_URL, "needs the locally built tenki binary");

const password = "usage password 1";

test("the demo workspace's Usage page shows the chart, the per-label table and a CSV row per job", async ({ page }) => {
  const problems = watchConsole(page);
  const email = uniqueEmail("demo");
  const output = tenki("demo", "--email", email, "--password", password);
  expect(output).toContain("demo workspace ready");

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
    "job_key,completed_at,repository,workflow,label,vcpus,minutes,free_minutes_used_2vcpu_minutes,amount_usd,amount_microcents",
  );
  expect(csv.length - 1).toBe(jobs);
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
