// Production monitor: signs in with TENKI_MONITOR_EMAIL / TENKI_MONITOR_PASSWORD against BASE_URL
// and checks the Overview answers. Locally it signs up a monitor account first.
import { expect, test } from "@playwright/test";
import { expectOverview, signIn, signUp, uniqueEmail, waitForHydration } from "./helpers";

test("@monitor sign in and see the Overview", async ({ page }) => {
  let email = process.env.TENKI_MONITOR_EMAIL;
  let password = process.env.TENKI_MONITOR_PASSWORD;
  if (!email || !password) {
    test.skip(!!process.env.BASE_URL, "TENKI_MONITOR_EMAIL and TENKI_MONITOR_PASSWORD are required with BASE_URL");
    email = uniqueEmail("monitor");
    password = "monitor password 1";
    await signUp(page, "Monitor", email, password);
    await waitForHydration(page);
    await page.getByRole("button", { name: "Sign out" }).click();
    await expect(page).toHaveURL(/\/sign-in(\?flow=.*)?$/);
  }
  await signIn(page, email, password);
  await expectOverview(page);
  await expect(page.getByTestId("free-minutes-left")).toBeVisible();
});
