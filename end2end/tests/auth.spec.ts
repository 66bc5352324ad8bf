// Sign-up, the Overview's free minutes, sign-out and sign-in, in a real browser.
import { expect, test } from "@playwright/test";
import { expectOverview, signIn, uniqueEmail, waitForHydration, watchConsole } from "./helpers";

const password = "correct horse battery";

test("sign up shows 1,000 free minutes; they are still there after signing out and in", async ({ page }) => {
  const problems = watchConsole(page);
  const email = uniqueEmail("newcomer");

  await page.goto("/sign-up");
  await waitForHydration(page);
  await page.getByLabel("Workspace name").fill("Acme CI");
  await page.getByLabel("E-mail").fill(email);
  await page.getByLabel("Password (at least 10 characters)").fill(password);
  await page.getByRole("button", { name: "Create account" }).click();

  await expectOverview(page);
  await expect(page.getByTestId("workspace-name")).toHaveText("Acme CI");
  await expect(page.getByTestId("free-minutes-left")).toHaveText("1,000");
  const bar = page.getByRole("progressbar", { name: "Free minutes left" });
  await expect(bar).toHaveAttribute("aria-valuenow", "1000");
  await expect(bar).toHaveAttribute("aria-valuemax", "1000");
  await expect(page.getByTestId("sandbox-badge")).toBeVisible();
  await page.screenshot({ path: "screenshots/overview.png", fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await expect(page.getByTestId("free-minutes-left")).toBeVisible();
  await page.screenshot({ path: "screenshots/overview-phone.png", fullPage: true });
  await page.setViewportSize({ width: 1280, height: 720 });

  await page.getByRole("button", { name: "Sign out" }).click();
  await expect(page).toHaveURL(/\/sign-in$/);
  await page.goto("/");
  await expect(page).toHaveURL(/\/sign-in$/);

  await signIn(page, email, password);
  await expectOverview(page);
  await expect(page.getByTestId("free-minutes-left")).toHaveText("1,000");
  expect(problems).toEqual([]);
});

test("a wrong password shows the error and keeps the person signed out", async ({ page }) => {
  const problems = watchConsole(page);
  const email = uniqueEmail("forgetful");
  await page.goto("/sign-up");
  await waitForHydration(page);
  await page.getByLabel("Workspace name").fill("Forgetful Inc");
  await page.getByLabel("E-mail").fill(email);
  await page.getByLabel("Password (at least 10 characters)").fill(password);
  await page.getByRole("button", { name: "Create account" }).click();
  await expectOverview(page);
  await page.getByRole("button", { name: "Sign out" }).click();
  await expect(page).toHaveURL(/\/sign-in$/);

  await signIn(page, email, "not the password");
  await expect(page.getByRole("alert")).toHaveText("Wrong password. Try again.");
  await expect(page).toHaveURL(/\/sign-in$/);
  await page.screenshot({ path: "screenshots/sign-in-wrong-password.png", fullPage: true });
  // The failed request is the only expected console entry.
  expect(problems.filter((p) => !p.includes("status of 500") && !p.includes("status of 4"))).toEqual([]);
});

test("a short password on sign-up says how long it must be", async ({ page }) => {
  await page.goto("/sign-up");
  await waitForHydration(page);
  await page.getByLabel("Workspace name").fill("Short");
  await page.getByLabel("E-mail").fill(uniqueEmail("short"));
  await page.getByLabel("Password (at least 10 characters)").fill("123456789");
  await page.getByRole("button", { name: "Create account" }).click();
  await expect(page.getByRole("alert")).toHaveText("Use at least 10 characters for your password.");
  await expect(page).toHaveURL(/\/sign-up$/);
});

test("the Overview reads without JavaScript", async ({ browser }) => {
  const email = uniqueEmail("nojs");
  const withJs = await browser.newPage();
  await withJs.goto("/sign-up");
  await waitForHydration(withJs);
  await withJs.getByLabel("Workspace name").fill("No Script Ltd");
  await withJs.getByLabel("E-mail").fill(email);
  await withJs.getByLabel("Password (at least 10 characters)").fill(password);
  await withJs.getByRole("button", { name: "Create account" }).click();
  await expectOverview(withJs);
  const cookies = await withJs.context().cookies();
  await withJs.close();

  const context = await browser.newContext({ javaScriptEnabled: false });
  await context.addCookies(cookies);
  const page = await context.newPage();
  await page.goto("/");
  await expect(page.getByTestId("free-minutes-left")).toHaveText("1,000");
  await context.close();
});
