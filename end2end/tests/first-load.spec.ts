// The first load of the dashboard: the WASM bundle is named by its content, compressed when it
// was built, cached by the browser for good, and small. Also measures how soon a page is
// interactive with an empty cache (figures in docs/benchmarks.md; printed, not asserted).
import { expect, test } from "@playwright/test";

test("the bundle is named by its content, brotli-compressed at build time, cached for good, and release-sized", async ({ page, request }) => {
  await page.goto("/sign-in");
  const js = await page.locator('link[rel="modulepreload"]').getAttribute("href");
  const wasm = await page.locator('link[rel="preload"][as="fetch"]').getAttribute("href");
  expect(js).toMatch(/^\/pkg\/tenki-[0-9a-f]{16}\.js$/);
  expect(wasm).toMatch(/^\/pkg\/tenki-[0-9a-f]{16}\.wasm$/);
  for (const [path, type] of [
    [js ?? "", "javascript"],
    [wasm ?? "", "application/wasm"],
  ]) {
    const response = await request.get(path, { headers: { "accept-encoding": "br, gzip" } });
    expect(response.status(), path).toBe(200);
    const headers = response.headers();
    expect(headers["content-encoding"], path).toBe("br");
    expect(headers["cache-control"], path).toBe("public, max-age=31536000, immutable");
    expect(headers["content-type"], path).toContain(type);
    if (type === "application/wasm") {
      const sent = Number(headers["content-length"]);
      console.log(`WASM bundle sent: ${sent} bytes (brotli)`);
      // The aim is 400 KB and it is not met: 431 KB (docs/benchmarks.md, "First load"). This
      // budget catches a debug-sized bundle (over 1 MB) or a large regression.
      expect(sent).toBeLessThan(480_000);
    }
  }
  // A browser that cannot take brotli gets the gzip file made at build time.
  const gzip = await request.get(wasm ?? "", { headers: { "accept-encoding": "gzip" } });
  expect(gzip.headers()["content-encoding"]).toBe("gzip");
  // The page itself is never cached as immutable: a new build must reach the browser.
  const html = await request.get("/sign-in");
  expect(html.headers()["cache-control"] ?? "").not.toContain("immutable");
});

test("measure: how soon the sign-in page is interactive with an empty cache, then with a warm one", async ({ browser }) => {
  const cold: number[] = [];
  const warm: number[] = [];
  for (let run = 0; run < 7; run += 1) {
    const context = await browser.newContext();
    const page = await context.newPage();
    for (const into of [cold, warm]) {
      await page.goto("/sign-in");
      await page.waitForFunction(() => (window as unknown as { __tenkiHydrated?: boolean }).__tenkiHydrated === true);
      into.push(await page.evaluate(() => (window as unknown as { __tenkiHydratedAt: number }).__tenkiHydratedAt));
    }
    await context.close();
  }
  const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
  console.log(
    `interactive after (ms since navigation start): cold cache median ${median(cold).toFixed(0)}, max ${Math.max(...cold).toFixed(0)}; ` +
      `warm cache median ${median(warm).toFixed(0)}, max ${Math.max(...warm).toFixed(0)}`,
  );
  expect(cold.length).toBe(7);
});
