// Signing in through Ory Kratos, in a real browser: Tenki's pages render the flows of the Kratos
// double (a server started with TENKI_KRATOS_PUBLIC_URL=sandbox, the "kratos" project), the forms
// post to it, and the dashboard follows its sessions.
import { expect, type Page, test } from "@playwright/test";
import { expectOverview, newestKratosCode, signIn, signUp, uniqueEmail, waitForHydration, watchConsole } from "./helpers";

const password = "correct horse battery";

async function kratosForm(page: Page, path: RegExp): Promise<void> {
  await expect(page).toHaveURL(path);
  await expect(page.getByTestId("kratos-flow")).toBeVisible();
  await waitForHydration(page);
}

test("signs up, confirms the address with Kratos's code, signs out and in again", async ({ page }) => {
  const problems = watchConsole(page);
  const email = uniqueEmail("kratos");

  // Sign-up: Tenki's page shows Kratos's registration form; Kratos's refusal shows on it.
  await page.goto("/sign-up");
  await kratosForm(page, /\/sign-up\?flow=/);
  await page.getByLabel("E-Mail").fill(email);
  await page.getByLabel("Password").fill("short");
  await page.getByRole("button", { name: "Sign up" }).click();
  await kratosForm(page, /\/sign-up\?flow=/);
  await expect(page.getByRole("alert")).toContainText("length must be >= 8, but got 5");
  await expect(page.getByLabel("E-Mail")).toHaveValue(email);
  await page.screenshot({ path: "screenshots/kratos-sign-up-refused.png", fullPage: true });
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign up" }).click();

  // The first request made the workspace; the minutes wait for the address.
  await expectOverview(page);
  await expect(page.getByTestId("workspace-name")).toHaveText(`${email.split("@")[0]}'s workspace`);
  await expect(page.getByTestId("free-minutes-left")).toHaveText("0");
  await expect(page.getByTestId("free-minutes-waiting")).toContainText(`we sent a code to ${email}`);

  // Confirm: Kratos's verification flow, with the code from its e-mail.
  await waitForHydration(page);
  await page.getByRole("link", { name: "Enter the code" }).click();
  await kratosForm(page, /\/verification\?flow=/);
  await expect(page.getByLabel("Email")).toHaveValue(email);
  await page.getByRole("button", { name: "Submit" }).click();
  await kratosForm(page, /\/verification\?flow=/);
  await page.getByLabel("Verification code").fill(await newestKratosCode(page.request, email));
  await page.getByRole("button", { name: "Submit" }).click();
  await expect(page.getByText("You successfully verified your email address.")).toBeVisible();
  await page.screenshot({ path: "screenshots/kratos-verified.png", fullPage: true });
  await page.getByRole("link", { name: "Continue" }).click();
  await expectOverview(page);
  await expect(page.getByTestId("free-minutes-left")).toHaveText("1,000");
  await expect(page.getByTestId("free-minutes-waiting")).toHaveCount(0);

  // The workspace Kratos's first sign-in made gets its own name in Settings.
  await page.goto("/settings");
  await page.getByLabel("Name").fill("Lovelace Labs");
  await page.getByRole("button", { name: "Rename" }).click();
  await expect(page.getByTestId("settings-notice")).toHaveText("Renamed.");
  await expect(page.getByTestId("workspace-name")).toHaveText("Lovelace Labs");
  await page.screenshot({ path: "screenshots/settings-workspace-name.png", fullPage: true });
  await page.goto("/");

  // Sign out through Kratos; the sign-in page is Kratos's login form.
  await waitForHydration(page);
  await page.getByRole("button", { name: "Sign out" }).click();
  await kratosForm(page, /\/sign-in\?flow=/);
  await page.goto("/usage");
  await kratosForm(page, /\/sign-in\?flow=/);
  await page.getByLabel("E-Mail").fill(email);
  await page.getByLabel("Password").fill("not the password");
  await page.getByRole("button", { name: "Sign in" }).click();
  await kratosForm(page, /\/sign-in\?flow=/);
  await expect(page.getByRole("alert")).toContainText("The provided credentials are invalid");
  await page.screenshot({ path: "screenshots/kratos-sign-in-refused.png", fullPage: true });
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  // Back where the visit asked to go, with the minutes still there.
  await expect(page).toHaveURL(/\/usage$/);
  await page.goto("/");
  await expect(page.getByTestId("free-minutes-left")).toHaveText("1,000");
  expect(problems).toEqual([]);
});

test("a forgotten password is reset with the code Kratos e-mails, then signs in", async ({ page }) => {
  const problems = watchConsole(page);
  const email = uniqueEmail("forgetful");
  await signUp(page, "Forgetful Co", email, password);
  await waitForHydration(page);
  await page.getByRole("button", { name: "Sign out" }).click();
  await kratosForm(page, /\/sign-in\?flow=/);

  await page.getByRole("link", { name: "Forgot your password?" }).click();
  await kratosForm(page, /\/recovery\?flow=/);
  await page.getByLabel("Email").fill(email);
  await page.getByRole("button", { name: "Submit" }).click();
  await kratosForm(page, /\/recovery\?flow=/);
  await expect(page.getByRole("status").first()).toContainText("An email containing a recovery code has been sent");
  await page.getByLabel("Recovery code").fill(await newestKratosCode(page.request, email));
  await page.screenshot({ path: "screenshots/kratos-recovery-code.png", fullPage: true });
  await page.getByRole("button", { name: "Continue" }).click();

  // Signed in by the code: Kratos's settings flow asks for the new password.
  await kratosForm(page, /\/account\?flow=/);
  await expect(page.getByText("You successfully recovered your account.")).toBeVisible();
  const newPassword = "a brand new password";
  await page.getByLabel("Password").fill(newPassword);
  await page.getByRole("button", { name: "Save" }).click();
  await expect(page.getByText("Your changes have been saved!")).toBeVisible();
  await page.screenshot({ path: "screenshots/kratos-account-saved.png", fullPage: true });
  await page.getByRole("link", { name: "Back to the Overview" }).click();
  await expectOverview(page);

  await waitForHydration(page);
  await page.getByRole("button", { name: "Sign out" }).click();
  await kratosForm(page, /\/sign-in\?flow=/);
  await signIn(page, email, newPassword);
  await expectOverview(page);
  await expect(page.getByTestId("workspace-name")).toHaveText("Forgetful Co");
  expect(problems).toEqual([]);
});
