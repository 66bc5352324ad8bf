// What every page owes a customer whatever it shows: its own title in the tab and the history,
// and an address that matches no page answered with a 404 that keeps the way on.
import { expect, test } from "@playwright/test";
import { signUp, uniqueEmail, waitForHydration, watchConsole } from "./helpers";

test("every page has its own title", async ({ page, browser }) => {
  const problems = watchConsole(page);
  await signUp(page, "Titles Co", uniqueEmail("titles"), "titles password 1");
  const pages: [string, string][] = [
    ["/", "Overview · Tenki"],
    ["/runners", "Runners · Tenki"],
    ["/jobs", "Jobs · Tenki"],
    ["/usage", "Usage · Tenki"],
    ["/add-ons", "Add-ons · Tenki"],
    ["/billing", "Billing · Tenki"],
    ["/settings", "Settings · Tenki"],
    ["/github/connected", "Connect GitHub · Tenki"],
  ];
  for (const [path, title] of pages) {
    await page.goto(path);
    await expect(page, path).toHaveTitle(title);
  }
  // Moving between pages in the browser changes it too.
  await page.getByRole("link", { name: "Usage" }).click();
  await expect(page).toHaveTitle("Usage · Tenki");
  expect(problems).toEqual([]);

  const visitor = await browser.newPage();
  await visitor.goto("/sign-in");
  await expect(visitor).toHaveTitle("Sign in · Tenki");
  await visitor.goto("/sign-up");
  await expect(visitor).toHaveTitle("Create your account · Tenki");
  await visitor.close();
});

test("on a phone no dashboard page is wider than the screen", async ({ page }) => {
  const problems = watchConsole(page);
  await page.setViewportSize({ width: 390, height: 844 });
  await signUp(page, "Phone Co", uniqueEmail("phone"), "phone password 1");
  for (const path of ["/", "/runners", "/jobs", "/usage", "/add-ons", "/billing", "/settings", "/sign-in", "/sign-up"]) {
    await page.goto(path);
    await waitForHydration(page);
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    expect(width, `${path} is ${width} px wide`).toBeLessThanOrEqual(390);
    await page.screenshot({ path: `screenshots/phone${path === "/" ? "-overview" : path.replace("/", "-")}.png`, fullPage: true });
  }
  expect(problems).toEqual([]);
});

test("an unknown address is a 404 that says so and keeps the navigation", async ({ page }) => {
  await signUp(page, "Lost Co", uniqueEmail("lost"), "lost password 1");
  const response = await page.goto("/no-such-page");
  expect(response?.status()).toBe(404);
  await waitForHydration(page);
  await expect(page).toHaveTitle("Page not found · Tenki");
  await expect(page.getByRole("heading", { name: "Page not found" })).toBeVisible();
  await expect(page.getByTestId("not-found")).toContainText("There is no page at this address.");
  await expect(page.getByText("coming soon")).toHaveCount(0);
  await page.screenshot({ path: "screenshots/not-found.png", fullPage: true });
  await page.getByRole("link", { name: "Usage" }).click();
  await expect(page.getByRole("heading", { name: "Usage" })).toBeVisible();
  await page.goto("/usage/nothing-here");
  await page.getByRole("link", { name: "Go to the Overview" }).click();
  await expect(page.getByRole("heading", { name: "Overview" })).toBeVisible();
});

test("the GitHub outcome page says linked only for this workspace's installation, and refusals are 4xx", async ({ page }) => {
  await signUp(page, "Typed Co", uniqueEmail("typed"), "typed password 1");
  // Anyone can type an account into the address: it is not linked to this workspace.
  const typed = await page.goto("/github/connected?account=acme-corp");
  expect(typed?.status()).toBe(404);
  await expect(page.getByTestId("github-not-linked")).toContainText("No GitHub installation on acme-corp is linked");
  await expect(page.getByTestId("github-connected")).toHaveCount(0);
  await page.screenshot({ path: "screenshots/github-not-linked.png", fullPage: true });

  const unknown = await page.goto("/github/connected?refused=made_up");
  expect(unknown?.status()).toBe(400);
  await expect(page.getByTestId("github-setup-refused")).toContainText("does not know how that connection ended");
  const notFound = await page.goto("/github/connected?refused=github_not_found&installation=42");
  expect(notFound?.status()).toBe(404);
  await expect(page.getByTestId("github-setup-refused")).toContainText("GitHub cannot find installation 42");
});
