// Sign-up, the Overview's free minutes, sign-out and sign-in, in a real browser.
import { expect, type Page, test } from "@playwright/test";
import { confirmEmail, expectOverview, signIn, signUp, uniqueEmail, waitForHydration, watchConsole } from "./helpers";

const password = "correct horse battery";

test("the e-mailed link brings 1,000 free minutes; they are still there after signing out and in", async ({ page }) => {
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
  // Nothing until the address is confirmed, and the Overview says so.
  await expect(page.getByTestId("free-minutes-left")).toHaveText("0");
  const waiting = page.getByTestId("free-minutes-waiting");
  await expect(waiting).toContainText(`Confirm your e-mail address to receive your 1,000 free minutes: we sent a link to ${email}.`);
  await expect(page.getByTestId("free-minutes-exhausted")).toHaveCount(0);
  await waitForHydration(page);
  await waiting.getByRole("button", { name: "Send the link again" }).click();
  await expect(page.getByTestId("verification-sent")).toBeVisible();
  await page.screenshot({ path: "screenshots/overview-confirm-email.png", fullPage: true });

  await confirmEmail(page, email);
  await expect(page.getByTestId("free-minutes-left")).toHaveText("1,000");
  await expect(page.getByTestId("free-minutes-waiting")).toHaveCount(0);
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
  await expect(page.getByRole("alert")).toHaveText("Wrong e-mail or password. Try again.");
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
  await confirmEmail(withJs, email);
  const cookies = await withJs.context().cookies();
  await withJs.close();

  const context = await browser.newContext({ javaScriptEnabled: false });
  await context.addCookies(cookies);
  const page = await context.newPage();
  await page.goto("/");
  await expect(page.getByTestId("free-minutes-left")).toHaveText("1,000");
  await context.close();
});

test("a signed-out visit goes to sign-in, and signing in opens the page it asked for", async ({ page, request }) => {
  const email = uniqueEmail("return");
  const password = "return password 1";
  await signUp(page, "Return Co", email, password);
  await page.getByRole("button", { name: "Sign out" }).click();
  await expect(page).toHaveURL(/\/sign-in$/);

  // The server answers the page itself with the redirect, before any JavaScript.
  const asked = await request.get("/usage?month=2026-10", {
    maxRedirects: 0,
    headers: { accept: "text/html,application/xhtml+xml" },
  });
  expect(asked.status()).toBe(302);
  expect(asked.headers()["location"]).toBe("/sign-in?next=/usage%3Fmonth%3D2026-10");
  for (const path of ["/jobs", "/runners", "/add-ons", "/billing", "/settings"]) {
    const other = await request.get(path, { maxRedirects: 0, headers: { accept: "text/html" } });
    expect(other.status(), path).toBe(302);
    expect(other.headers()["location"], path).toBe(`/sign-in?next=${path}`);
  }

  await page.goto("/usage?month=2026-10");
  await expect(page).toHaveURL(/\/sign-in\?next=/);
  await signInHere(page, email, password);
  await expect(page).toHaveURL(/\/usage\?month=2026-10$/);
  await expect(page.getByTestId("usage-month")).toHaveText("October 2026");

  // A link that would send people elsewhere after signing in lands on the Overview.
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.goto("/sign-in?next=//evil.example/steal");
  await signInHere(page, email, password);
  await expect(page.getByRole("heading", { name: "Overview" })).toBeVisible();
  expect(page.url()).not.toContain("evil.example");
});

/** Signs in on the sign-in page already open (keeping its `next`). */
async function signInHere(page: Page, email: string, password: string): Promise<void> {
  await waitForHydration(page);
  await page.getByLabel("E-mail").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
}

test("without JavaScript a refused sign-in or sign-up shows the form again with the message", async ({ browser }) => {
  const email = uniqueEmail("nojs-refused");
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();

  await page.goto("/sign-up");
  await page.getByLabel("Workspace name").fill("No Script Co");
  await page.getByLabel("E-mail").fill(email);
  await page.getByLabel("Password (at least 10 characters)").fill("short");
  await page.getByRole("button", { name: "Create account" }).click();
  await expect(page).toHaveURL(/\/sign-up$/);
  await expect(page.getByTestId("form-refused")).toContainText("10 characters");
  await expect(page.getByRole("button", { name: "Create account" })).toBeVisible();
  // What was typed is still there, except the password.
  await expect(page.getByLabel("Workspace name")).toHaveValue("No Script Co");
  await expect(page.getByLabel("E-mail")).toHaveValue(email);
  await expect(page.getByLabel("Password (at least 10 characters)")).toHaveValue("");
  await page.screenshot({ path: "screenshots/sign-up-refused-without-javascript.png", fullPage: true });

  await page.getByLabel("Password (at least 10 characters)").fill(password);
  await page.getByRole("button", { name: "Create account" }).click();
  await expect(page.getByTestId("free-minutes-left")).toHaveText("0");
  await confirmEmail(page, email);
  await expect(page.getByTestId("free-minutes-left")).toHaveText("1,000");
  await page.getByRole("button", { name: "Sign out" }).click();

  await page.goto("/sign-in?next=/usage");
  await page.getByLabel("E-mail").fill(email);
  await page.getByLabel("Password").fill("not the password");
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page).toHaveURL(/\/sign-in\?next=\/usage$/);
  await expect(page.getByTestId("form-refused")).toHaveText("Wrong e-mail or password. Try again.");
  await expect(page.getByLabel("E-mail")).toHaveValue(email);
  await expect(page.getByLabel("Password")).toHaveValue("");
  expect(await page.content()).not.toContain('"Refused"');
  // Shown once: the page read again has no message.
  await page.reload();
  await expect(page.getByTestId("form-refused")).toHaveCount(0);
  await expect(page.getByLabel("E-mail")).toHaveValue("");

  await page.getByLabel("E-mail").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page).toHaveURL(/\/usage$/);
  await context.close();
});
