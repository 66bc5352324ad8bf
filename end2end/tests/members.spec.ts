// Members and roles in the browser: an owner invites someone by e-mail, the invited person
// accepts the link in their own browser, switches between their workspaces, and as a member
// sees usage but not the buttons that change billing.
import { expect, test } from "@playwright/test";
import { linkInMail, signUp, throughKratos, uniqueEmail, waitForHydration, watchConsole } from "./helpers";

const password = "members password 1";

test("an owner invites a member, who accepts in another browser, sees usage but no billing buttons, and switches workspaces", async ({ page, browser }) => {
  const problems = watchConsole(page);
  const ownerEmail = uniqueEmail("owner");
  const memberEmail = uniqueEmail("invited");
  await signUp(page, "Invite Co", ownerEmail, password);
  await page.goto("/settings");
  await waitForHydration(page);
  const invite = page.getByTestId("invite");
  await invite.getByLabel("Invite by e-mail").fill(memberEmail);
  await invite.getByLabel("as").selectOption("member");
  await invite.getByRole("button", { name: "Invite" }).click();
  const link = await page.getByTestId("invitation-link").innerText();
  expect(link).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/join\?token=[0-9a-f]{64}$/);
  await page.screenshot({ path: "screenshots/members-invited.png", fullPage: true });

  // The invited person has an account of their own, and opens the link in their browser.
  const other = await browser.newContext();
  const invited = await other.newPage();
  const invitedProblems = watchConsole(invited);
  await signUp(invited, "Own Co", memberEmail, password);
  // The invitation reached them by e-mail, with the link the owner was shown.
  expect(await linkInMail(invited, memberEmail, "invited you to Invite Co")).toBe(link);
  await invited.goto(link);
  await invited.getByRole("button", { name: "Accept the invitation" }).click();
  await expect(invited.getByTestId("workspace-name")).toHaveText("Invite Co");
  // A member reads usage, and is offered no billing change.
  await invited.getByRole("link", { name: "Usage" }).click();
  await expect(invited.getByRole("heading", { name: "Usage" })).toBeVisible();
  await invited.goto("/billing");
  await expect(invited.getByRole("heading", { name: "Billing", exact: true })).toBeVisible();
  await expect(invited.getByRole("button", { name: /add a card/i })).toHaveCount(0);
  await expect(invited.getByRole("button", { name: /manage billing/i })).toHaveCount(0);
  await invited.screenshot({ path: "screenshots/members-billing-as-member.png", fullPage: true });
  // Nor the audit log.
  await invited.goto("/settings");
  await expect(invited.getByTestId("members")).toBeVisible();
  await expect(invited.getByTestId("audit-log")).toHaveCount(0);
  // The link works once.
  await invited.goto(link);
  await invited.getByRole("button", { name: "Accept the invitation" }).click();
  await expect(invited.getByTestId("join-refused")).toHaveText("This invitation was used already.");
  // Back to their own workspace and again.
  await invited.goto("/");
  await invited.getByTestId("workspace-switcher").getByLabel("Switch to").selectOption({ label: "Own Co" });
  await invited.getByRole("button", { name: "Switch" }).click();
  await expect(invited.getByTestId("workspace-name")).toHaveText("Own Co");
  expect(invitedProblems).toEqual([]);
  await other.close();

  // The owner sees the new member, and the rule that a workspace keeps an owner.
  await page.goto("/settings");
  const rows = page.getByTestId("member");
  await expect(rows).toHaveCount(2);
  await expect(rows.nth(1)).toContainText(memberEmail);
  await page.getByRole("button", { name: "Leave workspace" }).click();
  await expect(page.getByTestId("members-notice")).toHaveText(
    "A workspace keeps at least one owner: make someone else an owner first.",
  );
  await page.getByLabel(`Role of ${memberEmail}`).selectOption("admin");
  await page.getByRole("button", { name: "Change" }).click();
  await expect(page.getByTestId("members-notice")).toHaveText("Role changed.");
  await expect(page.getByLabel(`Role of ${memberEmail}`)).toHaveValue("admin");
  await page.screenshot({ path: "screenshots/members.png", fullPage: true });
  // The audit log says who did what, newest first.
  const events = page.getByTestId("audit-event");
  // Through Kratos the owner's sign-up named the workspace in Settings: the first line.
  await expect(events).toHaveCount(throughKratos() ? 4 : 3);
  if (throughKratos()) {
    await expect(events.nth(3)).toContainText("to Invite Co");
  }
  await expect(events.nth(0)).toContainText(`changed ${memberEmail} from member to admin`);
  await expect(events.nth(0)).toContainText(ownerEmail);
  await expect(events.nth(1)).toContainText("accepted the invitation and joined as member");
  await expect(events.nth(2)).toContainText(`invited ${memberEmail} as member`);
  await page.getByTestId("audit-log").scrollIntoViewIfNeeded();
  await page.screenshot({ path: "screenshots/audit-log.png" });
  expect(problems).toEqual([]);
});

test("someone invited without an account signs up from the link and lands in the workspace", async ({ page, browser }) => {
  const problems = watchConsole(page);
  const newcomer = uniqueEmail("newcomer");
  await signUp(page, "Welcome Co", uniqueEmail("welcome-owner"), password);
  await page.goto("/settings");
  await waitForHydration(page);
  await page.getByTestId("invite").getByLabel("Invite by e-mail").fill(newcomer);
  await page.getByTestId("invite").getByRole("button", { name: "Invite" }).click();
  const link = await page.getByTestId("invitation-link").innerText();

  const fresh = await browser.newContext();
  const visitor = await fresh.newPage();
  await visitor.goto(link);
  if (throughKratos()) {
    // Signed out: to Kratos's sign-in, then on to its sign-up; the link is kept across both
    // flows (Tenki's return cookie), so the new account lands on it.
    await expect(visitor).toHaveURL(/\/sign-in\?flow=/);
    await visitor.getByRole("link", { name: "Create an account" }).click();
    await expect(visitor).toHaveURL(/\/sign-up\?flow=/);
    await visitor.getByLabel("E-mail").fill(newcomer);
    await visitor.getByLabel("Password").fill(password);
    await visitor.getByRole("button", { name: "Sign up" }).click();
  } else {
    // Signed out: to sign-in, which keeps the link; no account yet: on to sign-up, which too.
    await expect(visitor).toHaveURL(/\/sign-in\?next=/);
    await waitForHydration(visitor);
    await visitor.getByRole("link", { name: "Create an account" }).click();
    await expect(visitor).toHaveURL(/\/sign-up\?next=\/join%3Ftoken%3D[0-9a-f]{64}$/);
    await waitForHydration(visitor);
    await visitor.getByLabel("Workspace name").fill("Newcomer Co");
    await visitor.getByLabel("E-mail").fill(newcomer);
    await visitor.getByLabel("Password (at least 10 characters)").fill(password);
    await visitor.getByRole("button", { name: "Create account" }).click();
  }
  await expect(visitor).toHaveURL(/\/join\?token=[0-9a-f]{64}$/);
  await visitor.getByRole("button", { name: "Accept the invitation" }).click();
  await expect(visitor.getByTestId("workspace-name")).toHaveText("Welcome Co");
  await fresh.close();
  expect(problems).toEqual([]);
});
