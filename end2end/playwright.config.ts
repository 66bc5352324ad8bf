// Browser tests in Debian's Chromium. Without BASE_URL they start the locally built server
// (scripts/test.sh sets TENKI_E2E_SERVER and the service addresses); with BASE_URL they run
// against that deployment, which is how the @monitor tests watch staging and production.
import { defineConfig } from "@playwright/test";

const localPort = 3100;
const baseURL = process.env.BASE_URL ?? `http://127.0.0.1:${localPort}`;

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
  webServer: process.env.BASE_URL
    ? undefined
    : {
        command: process.env.TENKI_E2E_SERVER ?? "../target/debug/tenki",
        url: `${baseURL}/readyz`,
        reuseExistingServer: false,
        timeout: 60_000,
        stdout: "pipe",
        stderr: "pipe",
        env: {
          TENKI_ADDR: `127.0.0.1:${localPort}`,
          TENKI_PUBLIC_URL: baseURL,
          TENKI_DATABASE_URL: process.env.TENKI_DATABASE_URL ?? "",
          TENKI_TIGERBEETLE_ADDRESSES: process.env.TENKI_TIGERBEETLE_ADDRESSES ?? "",
          TENKI_SITE_ROOT: process.env.TENKI_SITE_ROOT ?? "",
          TENKI_LOG: "warn",
          // Every test signs up from 127.0.0.1: above the default of 10 sign-ups an hour.
          TENKI_SIGN_UPS_PER_ADDRESS: "1000",
        },
      },
});
