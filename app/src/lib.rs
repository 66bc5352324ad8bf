//! The product a customer sees: the Leptos pages and the server functions they call. With
//! `ssr` it renders on the server and reaches `tenki-core`; with `hydrate` it compiles to WASM.

pub mod addons;
pub mod audit;
pub mod auth;
pub mod billing;
pub mod dashboard;
pub mod error;
pub mod github;
pub mod jobs;
pub mod members;
pub mod runners;
pub mod self_service;
#[cfg(feature = "ssr")]
pub mod server;
pub mod settings;
pub mod usage;

use leptos::prelude::*;
use leptos_meta::{MetaTags, Stylesheet, Title, provide_meta_context};
use leptos_router::components::{ParentRoute, Route, Router, Routes};
use leptos_router::{SsrMode, path};

#[cfg(feature = "ssr")]
pub use server::ServerContext;

use crate::addons::AddonsPage;
use crate::auth::{SignInPage, SignUpPage};
use crate::billing::BillingPage;
use crate::dashboard::{DashboardLayout, NotFoundPage, OverviewPage};
use crate::github::GitHubConnectedPage;
use crate::jobs::JobsPage;
use crate::members::JoinPage;
use crate::runners::RunnersPage;
use crate::self_service::{AccountPage, RecoveryPage, VerificationPage};
use crate::settings::SettingsPage;
use crate::usage::UsagePage;

/// The HTML document around the app, rendered on the server.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <link rel="icon" href="/favicon.ico"/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body class="bg-slate-50 text-slate-900 antialiased">
                <App/>
            </body>
        </html>
    }
}

/// The dashboard's routes. Pages render completely on the server (`SsrMode::Async`), so they
/// read without JavaScript, and hydrate for live updates.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <Stylesheet id="tenki" href="/pkg/tenki.css"/>
        <Title text="Tenki"/>
        <Router>
            <Routes fallback=NotFoundPage>
                <Route path=path!("/sign-in") view=SignInPage ssr=SsrMode::Async/>
                <Route path=path!("/sign-up") view=SignUpPage ssr=SsrMode::Async/>
                <Route path=path!("/verification") view=VerificationPage ssr=SsrMode::Async/>
                <Route path=path!("/recovery") view=RecoveryPage ssr=SsrMode::Async/>
                <Route path=path!("/account") view=AccountPage ssr=SsrMode::Async/>
                <ParentRoute path=path!("") view=DashboardLayout ssr=SsrMode::Async>
                    <Route path=path!("") view=OverviewPage ssr=SsrMode::Async/>
                    <Route path=path!("runners") view=RunnersPage ssr=SsrMode::Async/>
                    <Route path=path!("github/connected") view=GitHubConnectedPage ssr=SsrMode::Async/>
                    <Route path=path!("jobs") view=JobsPage ssr=SsrMode::Async/>
                    <Route path=path!("usage") view=UsagePage ssr=SsrMode::Async/>
                    <Route path=path!("add-ons") view=AddonsPage ssr=SsrMode::Async/>
                    <Route path=path!("billing") view=BillingPage ssr=SsrMode::Async/>
                    <Route path=path!("settings") view=SettingsPage ssr=SsrMode::Async/>
                    <Route path=path!("join") view=JoinPage ssr=SsrMode::Async/>
                </ParentRoute>
            </Routes>
        </Router>
    }
}
