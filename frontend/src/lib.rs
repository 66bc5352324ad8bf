//! The browser entry point: hydrates the server-rendered dashboard.

use wasm_bindgen::prelude::wasm_bindgen;

#[wasm_bindgen(
    inline_js = "export function mark_hydrated() { window.__tenkiHydratedAt = performance.now(); window.__tenkiHydrated = true; }"
)]
extern "C" {
    /// Lets browser tests wait for hydration instead of sleeping, and measure when the page
    /// became interactive (milliseconds since navigation started).
    fn mark_hydrated();
}

/// Called by the generated JS once the WASM bundle is loaded.
#[wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
    mark_hydrated();
}
