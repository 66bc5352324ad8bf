// Browser tests in Debian's Chromium. Without BASE_URL they start the locally built server
// (scripts/test.sh sets TENKI_E2E_SERVER and the service addresses); with BASE_URL they run
// against that deployment, which is how the @monitor tests watch staging and production.
import { defineConfig } from "@playwright/test";

const localPort = 3100;
const baseURL = process.env.BASE_URL ?? `http://127.0.0.1:${localPort}`;
// A second server, signing people in through the Kratos double, for the "kratos" project.
const kratosPort = 3101;
const kratosURL = `http://127.0.0.1:${kratosPort}`;

/** The environment of a locally started server answering at `url`. */
function serverEnv(url: string, port: number, extra: Record<string, string>): Record<string, string> {
  return {
    TENKI_ADDR: `127.0.0.1:${port}`,
    TENKI_PUBLIC_URL: url,
    TENKI_DATABASE_URL: process.env.TENKI_DATABASE_URL ?? "",
    TENKI_TIGERBEETLE_ADDRESSES: process.env.TENKI_TIGERBEETLE_ADDRESSES ?? "",
    TENKI_SITE_ROOT: process.env.TENKI_SITE_ROOT ?? "",
    TENKI_LOG: "warn",
    // Every test signs up from 127.0.0.1: above the default of 10 sign-ups an hour.
    TENKI_SIGN_UPS_PER_ADDRESS: "1000",
    ...extra,
  };
}

export default defineConfig({
  testDir: "./tests",
  timeout: 30_000,
  expect: { timeout: 10_000 },
  fullyParallel: false,
  workers: 1,
  retries: 0,
  reporter: [["list"]],
  use: {
    baseURL,
    trace: "retain-on-failure",
    screenshot: "only-on-failure",
    launchOptions: {
      executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
      args: [
        "--no-sandbox",
        "--headless",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    },
  },
  projects: [
    // The whole suite with the built-in identity (the local default).
    { name: "built-in", testIgnore: /kratos\.spec\.ts/ },
    // The suite again, signing in through Ory Kratos (its double), on a server and database of
    // its own; the helpers sign up and in through Kratos's forms there, and import `tenki demo`'s
    // accounts into Kratos. Left out: the built-in identity's own pages (auth) and the bundle
    // measurements (first-load: the same bundle).
    // Only where the local servers run: a deployment signs in one way.
    ...(process.env.BASE_URL
      ? []
      : [{ name: "kratos", testIgnore: /(auth|first-load)\.spec\.ts/, use: { baseURL: kratosURL } }]),
  ],
  webServer: process.env.BASE_URL
    ? undefined
    : [
        {
          command: process.env.TENKI_E2E_SERVER ?? "../target/debug/tenki",
          url: `${baseURL}/readyz`,
          reuseExistingServer: false,
          timeout: 60_000,
          stdout: "pipe",
          stderr: "pipe",
          env: serverEnv(baseURL, localPort, {}),
        },
        {
          command: process.env.TENKI_E2E_SERVER ?? "../target/debug/tenki",
          url: `${kratosURL}/readyz`,
          reuseExistingServer: false,
          timeout: 60_000,
          stdout: "pipe",
          stderr: "pipe",
          env: serverEnv(kratosURL, kratosPort, {
            TENKI_DATABASE_URL: process.env.TENKI_KRATOS_DATABASE_URL ?? "",
            TENKI_KRATOS_PUBLIC_URL: "sandbox",
          }),
        },
      ],
});
