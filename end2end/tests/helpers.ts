// Shared steps of the dashboard tests.
import { type APIRequestContext, expect, type Page, test } from "@playwright/test";
import { execFileSync } from "node:child_process";
import { createHmac, randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";

/** A fresh e-mail address per test run, so tests never collide with earlier data. */
export function uniqueEmail(prefix: string): string {
  return `${prefix}-${Date.now()}-${Math.floor(Math.random() * 1e6)}@example.com`;
}

/** Fails the test on any console error or uncaught exception, hydration warnings included. */
export function watchConsole(page: Page): string[] {
  const problems: string[] = [];
  page.on("console", (message) => {
    if (message.type() === "error" || message.type() === "warning") {
      problems.push(`${message.type()}: ${message.text()}`);
    }
  });
  page.on("pageerror", (error) => problems.push(`pageerror: ${error.message}`));
  return problems;
}

/** Waits until the WASM bundle has hydrated the page, so clicks are handled by Leptos. */
export async function waitForHydration(page: Page): Promise<void> {
  await page.waitForLoadState("networkidle");
  await page.waitForFunction(() => (window as unknown as { __tenkiHydrated?: boolean }).__tenkiHydrated === true);
}

/** This test runs in the "kratos" project: its server signs people in through the Kratos double. */
export function throughKratos(): boolean {
  return test.info().project.name === "kratos";
}

/** Signs in through the sign-in page: the built-in form, or Kratos's login form it renders. */
export async function signIn(page: Page, email: string, password: string): Promise<void> {
  await page.goto("/sign-in");
  if (throughKratos()) {
    await expect(page).toHaveURL(/\/sign-in\?flow=/);
  } else {
    await waitForHydration(page);
  }
  await page.getByLabel("E-mail").fill(email);
  await page.getByLabel("Password", { exact: true }).fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
}

export async function expectOverview(page: Page): Promise<void> {
  await expect(page).toHaveURL(/\/$/);
  await expect(page.getByRole("heading", { name: "Overview" })).toBeVisible();
}

/** Runs the locally built `tenki` binary (admin and demo commands) against the test services
 * (the Kratos project's server has a database of its own). */
export function tenki(...args: string[]): string {
  const binary = process.env.TENKI_E2E_SERVER;
  if (!binary) throw new Error("TENKI_E2E_SERVER is set by scripts/test.sh");
  const database = throughKratos() ? { TENKI_DATABASE_URL: process.env.TENKI_KRATOS_DATABASE_URL ?? "" } : {};
  return execFileSync(binary, args, { env: { ...process.env, TENKI_LOG: "warn", ...database }, encoding: "utf8" });
}

/** Creates an account with the workspace `workspace` and confirms its address, as a customer
 * does: the built-in sign-up and its e-mailed link; or, through Kratos, its registration form,
 * its e-mailed code, and the workspace renamed in Settings. Ends on the Overview. */
export async function signUp(page: Page, workspace: string, email: string, password: string): Promise<void> {
  if (throughKratos()) {
    await signUpThroughKratos(page, workspace, email, password);
    return;
  }
  await page.goto("/sign-up");
  await waitForHydration(page);
  await page.getByLabel("Workspace name").fill(workspace);
  await page.getByLabel("E-mail").fill(email);
  await page.getByLabel("Password (at least 10 characters)").fill(password);
  await page.getByRole("button", { name: "Create account" }).click();
  await expectOverview(page);
  await confirmEmail(page, email);
  await page.goto("/");
  await expectOverview(page);
}

async function signUpThroughKratos(page: Page, workspace: string, email: string, password: string): Promise<void> {
  await page.goto("/sign-up");
  await expect(page).toHaveURL(/\/sign-up\?flow=/);
  await page.getByLabel("E-mail").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign up" }).click();
  await expectOverview(page);
  await page.goto("/verification");
  await expect(page).toHaveURL(/\/verification\?flow=/);
  await page.getByRole("button", { name: "Submit" }).click();
  await expect(page.getByLabel("Verification code")).toBeVisible();
  await page.getByLabel("Verification code").fill(await newestKratosCode(page.request, email));
  await page.getByRole("button", { name: "Submit" }).click();
  await expect(page.getByText("You successfully verified your email address.")).toBeVisible();
  await page.goto("/settings");
  await page.getByLabel("Name").fill(workspace);
  await page.getByRole("button", { name: "Rename" }).click();
  await expect(page.getByTestId("workspace-name")).toHaveText(workspace);
  await page.goto("/");
  await expectOverview(page);
}

/** In the Kratos project: gives the Kratos double the identity of an account the built-in
 * identity made (`tenki demo`), its address verified, as an operator moving accounts to Kratos
 * imports them (Kratos's admin API); Tenki takes the account over on its first sign-in.
 * Elsewhere it does nothing. */
export async function importIntoKratos(request: APIRequestContext, email: string, password: string): Promise<void> {
  if (!throughKratos()) return;
  const answer = await request.post("/sandbox/kratos/admin/identities", {
    data: {
      schema_id: "default",
      traits: { email },
      credentials: { password: { config: { password } } },
      verifiable_addresses: [{ value: email, verified: true, via: "email", status: "completed" }],
    },
  });
  expect(answer.status()).toBe(201);
}

/** The code in the newest e-mail the Kratos double's courier sent to `email`. */
export async function newestKratosCode(request: APIRequestContext, email: string): Promise<string> {
  const answer = await request.get(`/sandbox/kratos/admin/courier/messages?recipient=${encodeURIComponent(email)}`);
  expect(answer.ok()).toBeTruthy();
  const messages = await answer.json();
  expect(messages.length).toBeGreaterThan(0);
  const code = /\n(\d{6})\n/.exec(messages[0].body);
  expect(code, messages[0].body).toBeTruthy();
  return code![1];
}

/** The newest link e-mailed to `email`, from the sandbox's mailbox. */
export async function newestLinkTo(page: Page, email: string): Promise<string> {
  const answer = await page.request.get(`/sandbox/mail?to=${encodeURIComponent(email)}`);
  expect(answer.ok()).toBeTruthy();
  const mails = await answer.json();
  expect(mails.length).toBeGreaterThan(0);
  return mails[0].link;
}

/** The link of the newest e-mail to `email` whose subject contains `subject`. */
export async function linkInMail(page: Page, email: string, subject: string): Promise<string> {
  const answer = await page.request.get(`/sandbox/mail?to=${encodeURIComponent(email)}`);
  expect(answer.ok()).toBeTruthy();
  const mail = (await answer.json()).find((m: { subject: string }) => m.subject.includes(subject));
  expect(mail, `an e-mail to ${email} about "${subject}"`).toBeTruthy();
  return mail.link;
}

/** Opens the verification link e-mailed to `email`, as its owner does from their inbox. */
export async function confirmEmail(page: Page, email: string): Promise<void> {
  await page.goto(await newestLinkTo(page, email));
  await expect(page.getByTestId("email-link-outcome")).toHaveText("Your e-mail address is confirmed.");
}

/** The sandbox's webhook secret (server/src/settings.rs). */
const SANDBOX_WEBHOOK_SECRET = "tenki-sandbox-webhook-secret";

/** A real GitHub payload from fixtures/github (copied from the shared fixtures). */
export function githubFixture(name: string): Record<string, any> {
  return JSON.parse(readFileSync(`../fixtures/github/${name}`, "utf8"));
}

/** Posts `body` to the webhook intake signed the way GitHub signs it; returns the status. */
export async function deliverToGithubWebhook(
  request: APIRequestContext,
  event: string,
  body: unknown,
): Promise<number> {
  const raw = JSON.stringify(body);
  const signature = "sha256=" + createHmac("sha256", SANDBOX_WEBHOOK_SECRET).update(raw).digest("hex");
  const response = await request.post("/webhooks/github", {
    data: raw,
    headers: {
      "content-type": "application/json",
      "x-github-event": event,
      "x-github-delivery": randomUUID(),
      "x-hub-signature-256": signature,
    },
  });
  return response.status();
}
