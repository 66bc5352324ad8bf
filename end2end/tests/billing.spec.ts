// Cards in the sandbox: the Billing page's "Add a card" goes through the Stripe double's Checkout
// (Stripe's test cards), back to Billing with the card shown; a declined card says so and saves
// nothing; "Manage billing" opens the double's billing portal, where removing the card is seen
// back on Billing through Stripe's webhook.
import { expect, test } from "@playwright/test";
import { signUp, tenki, uniqueEmail, waitForHydration, watchConsole } from "./helpers";

test.skip(!!process.env.BASE_URL, "the Stripe double exists only in the sandbox");

test("add a card in Stripe Checkout, see it on Billing, then remove it in the billing portal", async ({ page }) => {
  test.setTimeout(60_000);
  const problems = watchConsole(page);
  await signUp(page, "Billing Co", uniqueEmail("billing"), "billing password 1");
  await page.getByRole("link", { name: "Billing" }).click();
  await expect(page.getByRole("heading", { name: "Billing", exact: true })).toBeVisible();
  await expect(page.getByTestId("no-card")).toContainText("No card on file");
  await waitForHydration(page);
  await page.screenshot({ path: "screenshots/billing-no-card.png", fullPage: true });

  // A declined card: Checkout says so, nothing is saved.
  await page.getByTestId("add-card").click();
  await expect(page.getByRole("heading", { name: "Save a card for Tenki" })).toBeVisible();
  await expect(page.getByText("Sandbox Stripe")).toBeVisible();
  await page.getByLabel("Card number").fill("4000 0000 0000 0002");
  await page.getByRole("button", { name: "Save card" }).click();
  await expect(page.getByRole("alert")).toHaveText("Your card was declined.");
  await page.screenshot({ path: "screenshots/stripe-checkout-declined.png", fullPage: true });

  await page.getByLabel("Card number").fill("4242 4242 4242 4242");
  await page.getByLabel("Expiry (MM / YY)").fill("12 / 34");
  await page.getByLabel("CVC").fill("123");
  await page.getByRole("button", { name: "Save card" }).click();
  await expect(page).toHaveURL(/\/billing\?card=added$/);
  await expect(page.getByTestId("billing-notice")).toContainText("Card saved");
  const card = page.getByTestId("card");
  await expect(card).toHaveCount(1);
  await expect(card).toContainText("Visa ending in 4242");
  await expect(card).toContainText("expires 12/2034");
  await waitForHydration(page);
  await page.screenshot({ path: "screenshots/billing-card.png", fullPage: true });

  // The billing portal: remove the card, come back; Stripe's webhook tells Tenki.
  await page.getByTestId("manage-billing").click();
  await expect(page.getByRole("heading", { name: "Manage billing" })).toBeVisible();
  await page.getByRole("button", { name: "Remove visa ending in 4242" }).click();
  await expect(page.getByText("No payment methods.")).toBeVisible();
  await page.getByRole("link", { name: "Return to Tenki" }).click();
  await expect(page).toHaveURL(/\/billing$/);
  await expect(async () => {
    await page.reload();
    await expect(page.getByTestId("no-card")).toBeVisible({ timeout: 1_000 });
  }).toPass({ timeout: 15_000 });
  expect(problems).toEqual([]);
});

test("buy the macOS add-on and extra slots, then cancel the add-on: it stays on to the 1st", async ({ page }) => {
  test.setTimeout(60_000);
  const problems = watchConsole(page);
  await signUp(page, "Add-ons Co", uniqueEmail("addons"), "add-ons password 1");
  await page.getByRole("link", { name: "Add-ons" }).click();
  await expect(page.getByRole("heading", { name: "Add-ons", exact: true })).toBeVisible();
  await expect(page.getByTestId("addons-need-card")).toBeVisible();
  const macos = page.locator('[data-addon="macos"]');
  await expect(macos).toContainText("$39.00 / month");

  // Without a card the add-on is refused with the way out.
  await macos.getByRole("button", { name: "Turn on: macOS M4 runners" }).click();
  await expect(page.getByTestId("addons-notice")).toContainText("Add a card on the Billing page first");

  await page.getByRole("link", { name: "Billing" }).first().click();
  await page.getByTestId("add-card").click();
  await page.getByLabel("Card number").fill("4242 4242 4242 4242");
  await page.getByRole("button", { name: "Save card" }).click();
  await expect(page.getByTestId("card")).toContainText("Visa ending in 4242");

  await page.getByRole("link", { name: "Add-ons" }).click();
  await page.locator('[data-addon="macos"]').getByRole("button", { name: "Turn on: macOS M4 runners" }).click();
  await expect(page.getByTestId("addons-notice")).toContainText("Turned on");
  await expect(page.locator('[data-addon="macos"]')).toHaveAttribute("data-state", "on");
  await expect(page.locator('[data-addon="macos"]').getByTestId("addon-status")).toContainText("On since");

  await page.getByLabel("Extra x64 slots").fill("10");
  await page.getByRole("button", { name: "Save x64 slots" }).click();
  await expect(page.locator('[data-class="x64"]').getByTestId("slots-summary")).toHaveText(
    "10 extra: $70.00 / month · 50 concurrent x64 jobs",
  );

  await page.locator('[data-addon="macos"]').getByRole("button", { name: "Cancel: macOS M4 runners" }).click();
  await expect(page.getByTestId("addons-notice")).toContainText("stays on, and billed, until the end of the month");
  await expect(page.locator('[data-addon="macos"]')).toHaveAttribute("data-state", "ending");
  await expect(page.locator('[data-addon="macos"]').getByTestId("addon-status")).toContainText(/On until \w+ 1, \d{4} \(cancelled\)/);
  await waitForHydration(page);
  await page.screenshot({ path: "screenshots/add-ons.png", fullPage: true });
  expect(problems).toEqual([]);
});

test("last month's invoice is issued, charged and listed with its lines; the running month shows as a preview", async ({ page }) => {
  test.setTimeout(90_000);
  const problems = watchConsole(page);
  const email = uniqueEmail("invoice");
  await signUp(page, "Invoice Co", email, "invoice password 1");
  await page.getByRole("link", { name: "Billing" }).click();
  await page.getByTestId("add-card").click();
  await page.getByLabel("Card number").fill("4242 4242 4242 4242");
  await page.getByRole("button", { name: "Save card" }).click();
  await expect(page.getByTestId("card")).toContainText("Visa ending in 4242");

  // Last month: 1,200 minutes on 2 vCPUs, 1,000 of them free → $0.60.
  const now = new Date();
  const last = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 1, 15, 12));
  const lastMonth = last.toISOString().slice(0, 7);
  tenki("admin", "meter-job", "--email", email, "--label", "tenki-standard-2c", "--seconds", "72000",
    "--completed-at", last.toISOString());
  // This month so far: 10 paid minutes → $0.03.
  tenki("admin", "meter-job", "--email", email, "--label", "tenki-standard-2c", "--seconds", "600");
  const cycle = tenki("admin", "run-billing", "--month", lastMonth);
  expect(cycle).toContain("paid");

  await page.reload();
  await waitForHydration(page);
  const preview = page.getByTestId("preview");
  await expect(preview).toContainText("so far");
  await expect(preview).toContainText("tenki-standard-2c: 10 min");
  await expect(page.getByTestId("preview-total")).toHaveText("$0.03");

  const invoice = page.getByTestId("invoice").first();
  await expect(invoice.getByTestId("invoice-total")).toHaveText("$0.60");
  await expect(invoice.getByTestId("invoice-status")).toHaveText("Paid");
  await invoice.locator("summary").click();
  await expect(invoice).toContainText("tenki-standard-2c: 1200 min");
  await expect(invoice).toContainText("tenki-standard-2c: 1000 free minutes used");
  await page.screenshot({ path: "screenshots/billing-invoice.png", fullPage: true });

  // Stripe's hosted invoice page.
  await invoice.getByRole("link", { name: "View invoice" }).click();
  await expect(page.getByRole("heading", { name: /Invoice TENKI-/ })).toBeVisible();
  await expect(page.getByText("Total $0.60")).toBeVisible();
  expect(problems).toEqual([]);
});

test("a spending limit on Settings: crossing 50 % shows an alert on Billing", async ({ page }) => {
  test.setTimeout(60_000);
  const problems = watchConsole(page);
  const email = uniqueEmail("limit");
  await signUp(page, "Limit Co", email, "limit password 1");
  await page.getByRole("link", { name: "Settings" }).click();
  await expect(page.getByRole("heading", { name: "Settings", exact: true })).toBeVisible();
  await page.getByLabel("Monthly limit in dollars (empty: none)").fill("0.05");
  await page.getByLabel("Hard cap: start no new jobs once the limit is reached").check();
  await page.getByRole("button", { name: "Save" }).click();
  await expect(page.getByTestId("settings-notice")).toHaveText("Saved.");
  await expect(page.getByLabel("Monthly limit in dollars (empty: none)")).toHaveValue("0.05");

  // 1,000 free minutes, then 10 paid minutes on 2 vCPUs: $0.03, 60 % of the limit.
  tenki("admin", "meter-job", "--email", email, "--label", "tenki-standard-2c", "--seconds", "60000");
  tenki("admin", "meter-job", "--email", email, "--label", "tenki-standard-2c", "--seconds", "600");
  await page.reload();
  await expect(page.getByTestId("spent")).toContainText("$0.03 so far");
  await expect(page.getByTestId("spent")).toContainText("(60 % of the limit)");
  await waitForHydration(page);
  await page.screenshot({ path: "screenshots/settings-spending-limit.png", fullPage: true });

  await page.getByRole("link", { name: "Billing" }).click();
  await expect(page.getByTestId("notifications")).toContainText("You have used 60 % of your $0.05 monthly spending limit");
  await waitForHydration(page);
  await page.screenshot({ path: "screenshots/billing-spending-alert.png", fullPage: true });
  expect(problems).toEqual([]);
});
