//! The page's templates (maud: compiled, escaped by default). Every value
//! shown is escaped; no key is ever given to a template, only the
//! executor's views (`set (…abcd)` at most).

use llm_integration_core::Provider;
use maud::{html, Markup, DOCTYPE};
use serde_json::Value;

use super::usage::UsageReport;
use super::{field, Fields};

/// A typed field's value to write back into a form sent back with an
/// error: empty if it holds key-shaped text (a key pasted in the wrong
/// field is never echoed).
fn typed<'a>(fields: &'a Fields, name: &str) -> &'a str {
    let value = field(fields, name);
    if llm_integration_core::redact::Redactor::new([]).redact(value) == value {
        value
    } else {
        ""
    }
}
use crate::executor::PageContext;
use crate::usage_report::dollars;

/// A message at the top of a page: what was done, or why it was not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Done: the executor's first line.
    Done(String),
    /// Refused: the executor's words.
    Error(String),
}

/// A provider as the page names it.
pub(super) fn provider_title(p: Provider) -> &'static str {
    match p {
        Provider::Anthropic => "Anthropic",
        Provider::OpenAi => "OpenAI",
        Provider::Fireworks => "Fireworks",
    }
}

/// A source as the page names it.
pub(super) fn source_title(source: &str) -> &'static str {
    match source {
        "gateway" => "LLM gateway",
        "byok" => "API Key",
        "chatgpt" => "ChatGPT subscription",
        "custom" => "Custom HTTPS endpoint",
        "disabled" => "Disabled",
        _ => "no source",
    }
}

/// A custom endpoint's authentication as the page names it.
pub(super) fn auth_title(auth: &str) -> &'static str {
    match auth {
        "bearer" => "Bearer token",
        "header" => "Header",
        _ => "No authentication",
    }
}

const SOURCES: [&str; 5] = ["gateway", "byok", "chatgpt", "custom", "disabled"];
const AUTHS: [&str; 3] = ["none", "bearer", "header"];

fn layout(title: &str, user: Option<(&PageContext, &str)>, current: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · LLM integrations" }
                link rel="icon" href="/assets/icon.svg" type="image/svg+xml";
                link rel="stylesheet" href="/assets/app.css";
                script src="/assets/app.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    span.brand { "LLM integrations" }
                    @if let Some((ctx, csrf)) = user {
                        nav aria-label="Main" {
                            ul {
                                @for (href, label) in [("/integrations", "Integrations"), ("/chatgpt", "ChatGPT accounts"), ("/usage", "Usage")] {
                                    li { a href=(href) aria-current=[(current == href).then_some("page")] { (label) } }
                                }
                            }
                        }
                        form.signout method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(csrf);
                            span.who { (ctx.email) }
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main #main tabindex="-1" { (body) }
            }
        }
    }
}

fn notice(n: Option<&Notice>) -> Markup {
    html! {
        @match n {
            Some(Notice::Done(text)) => p.notice.ok role="status" { (text) },
            Some(Notice::Error(text)) => p.notice.error role="alert" { (text) },
            None => {},
        }
    }
}

/// A refusal page (bad origin, missing CSRF token, ended session, …).
pub fn refused(title: &str, why: &str) -> Markup {
    layout(
        title,
        None,
        "",
        html! {
            h1 { (title) }
            p.notice.error role="alert" { (why) }
            p { a href="/integrations" { "Back to the integrations page" } " · " a href="/login" { "Sign in" } }
        },
    )
}

/// The sign-in page: with a login link, one button; otherwise a field to
/// paste an access token.
pub fn login(link: Option<&str>, error: Option<&str>) -> Markup {
    layout(
        "Sign in",
        None,
        "",
        html! {
            section.card.narrow {
                h1 { "Sign in" }
                @if let Some(e) = error { p.notice.error role="alert" { (e) } }
                @if let Some(link) = link {
                    p { "This one-time link signs this browser in. It works once." }
                    form method="post" action="/login" {
                        input type="hidden" name="link" value=(link);
                        button.primary type="submit" { "Sign in" }
                    }
                } @else {
                    p { "Open a sign-in link (" code { "llm-integration login-link" } " prints one), or paste an access token." }
                    form method="post" action="/login" {
                        label for="token" { "Access token" }
                        input #token type="password" name="token" autocomplete="off" required aria-describedby="token-help";
                        p #token-help .help { "The token starts with " code { "lli_" } ". It is checked once and not kept by the page." }
                        button.primary type="submit" { "Sign in" }
                    }
                }
            }
        },
    )
}

/// After signing out.
pub fn signed_out() -> Markup {
    layout(
        "Signed out",
        None,
        "",
        html! {
            section.card.narrow {
                h1 { "Signed out" }
                p.notice.ok role="status" { "You are signed out. The session has ended on the server too." }
                p { a href="/login" { "Sign in again" } }
            }
        },
    )
}

fn target_hidden(name: &str, team: &str) -> Markup {
    html! {
        input type="hidden" name="name" value=(name);
        @if !team.is_empty() { input type="hidden" name="team" value=(team); }
    }
}

/// The VMs a `vm:` attachment may name, per owner scope: a personal
/// integration's are the user's own VMs, a team integration's the team's.
#[derive(Debug, Clone, Default)]
pub struct VmScopes {
    /// The user's VMs, by name.
    pub mine: Vec<String>,
    /// Each team of the user with its VMs, by name.
    pub teams: Vec<(String, Vec<String>)>,
}

impl VmScopes {
    /// The VMs of the scope of `team` (empty: the user's own).
    pub fn of(&self, team: &str) -> &[String] {
        if team.is_empty() {
            return &self.mine;
        }
        self.teams
            .iter()
            .find(|(t, _)| t == team)
            .map(|(_, vms)| vms.as_slice())
            .unwrap_or(&[])
    }
}

/// The text of the VM list when the scope has none.
fn no_vms(team: &str) -> String {
    if team.is_empty() {
        "(you have no VMs)".to_owned()
    } else {
        format!("(team {team} has no VMs)")
    }
}

/// Where to apply an integration. `owner` is the integration's owner when
/// it is fixed (`Some("")` personal, `Some(team)`): the VM list holds that
/// scope's VMs. `None` for a dialog with an owner choice: one group per
/// scope, which the script narrows to the chosen owner's (without it,
/// the executor refuses a VM outside the scope).
fn attach_fields(
    ctx: &PageContext,
    scopes: &VmScopes,
    owner: Option<&str>,
    id: &str,
    optional: bool,
    selected: &str,
) -> Markup {
    html! {
        fieldset.attach {
            legend { "Apply to" }
            @if optional {
                (radio(&format!("{id}-none"), "attach", "none", selected == "none" || selected.is_empty(), "Nothing yet"))
            }
            (radio(&format!("{id}-vm"), "attach", "vm", selected == "vm", "A VM"))
            label.sub for=(format!("{id}-vm-name")) { "VM" }
            @match owner {
                Some(team) => {
                    select id=(format!("{id}-vm-name")) name="attach_vm" {
                        @if scopes.of(team).is_empty() { option value="" { (no_vms(team)) } }
                        @for vm in scopes.of(team) { option value=(vm) { (vm) } }
                    }
                }
                None => {
                    select id=(format!("{id}-vm-name")) name="attach_vm" data-scoped {
                        @if scopes.mine.is_empty() && scopes.teams.iter().all(|(_, v)| v.is_empty()) {
                            option value="" { (no_vms("")) }
                        }
                        @if !scopes.mine.is_empty() {
                            optgroup label="Your VMs" data-owner="" {
                                @for vm in &scopes.mine { option value=(vm) { (vm) } }
                            }
                        }
                        @for (team, vms) in &scopes.teams {
                            optgroup label=(format!("Team {team}'s VMs")) data-owner=(team) {
                                @for vm in vms { option value=(vm) { (vm) } }
                            }
                        }
                    }
                }
            }
            (radio(&format!("{id}-tag"), "attach", "tag", selected == "tag", "VMs with a tag"))
            label.sub for=(format!("{id}-tag-name")) { "Tag" }
            input id=(format!("{id}-tag-name")) name="attach_tag" list=(format!("{id}-tags")) autocomplete="off";
            datalist id=(format!("{id}-tags")) { @for t in &ctx.tags { option value=(t) {} } }
            (radio(&format!("{id}-auto"), "attach", "auto", selected == "auto", "Every VM (auto:all)"))
        }
    }
}

fn radio(id: &str, name: &str, value: &str, checked: bool, label: &str) -> Markup {
    html! {
        span.choice {
            input type="radio" id=(id) name=(name) value=(value) checked[checked];
            label for=(id) { (label) }
        }
    }
}

fn source_summary(v: &Value) -> String {
    let source = v["source"].as_str().unwrap_or("");
    match source {
        "byok" => format!("API Key, {}", v["key"].as_str().unwrap_or("set")),
        "chatgpt" => format!(
            "ChatGPT subscription ({})",
            v["account"].as_str().unwrap_or("?")
        ),
        "custom" => {
            let url = v["url"].as_str().unwrap_or("?");
            let key = v["key"].as_str().unwrap_or("set");
            match v["auth"].as_str() {
                Some("bearer") => format!("Custom HTTPS endpoint {url}, bearer token {key}"),
                Some("header") => format!(
                    "Custom HTTPS endpoint {url}, header {} {key}",
                    v["header"].as_str().unwrap_or("?")
                ),
                _ => format!("Custom HTTPS endpoint {url}, no authentication"),
            }
        }
        other => source_title(other).to_owned(),
    }
}

/// The integrations page: tiles, then every integration of the user and
/// their teams with its actions.
pub fn integrations(
    ctx: &PageContext,
    scopes: &VmScopes,
    csrf: &str,
    list: &Value,
    n: Option<&Notice>,
) -> Markup {
    let items = list["integrations"].as_array().cloned().unwrap_or_default();
    layout(
        "Integrations",
        Some((ctx, csrf)),
        "/integrations",
        html! {
            h1 { "Integrations" }
            (notice(n))
            section aria-labelledby="add-heading" {
                h2 #add-heading { "Add an integration" }
                ul.tiles {
                    li { a.tile href="/integrations/new/llm" { strong { "LLM" } span { "Anthropic, OpenAI and Fireworks models at one hostname" } } }
                    li { a.tile href="/chatgpt" { strong { "ChatGPT subscription" } span { "Connect a ChatGPT account for OpenAI" } } }
                    li { a.tile href="/integrations/new/reflection" { strong { "Reflection" } span { "Let VMs read their own setup" } } }
                }
            }
            section aria-labelledby="list-heading" {
                h2 #list-heading { "Your integrations" }
                @if items.is_empty() { p { "No integrations yet. Add one above." } }
                ul.cards {
                    @for (i, it) in items.iter().enumerate() {
                        @let name = it["name"].as_str().unwrap_or("");
                        @let team = it["owner"]["team"].as_str().unwrap_or("");
                        @let kind = it["type"].as_str().unwrap_or("");
                        @let q = if team.is_empty() { format!("name={name}") } else { format!("name={name}&team={team}") };
                        li.card data-integration=(name) {
                            h3 { (name) " " span.badge { (kind) } @if !team.is_empty() { " " span.badge.team { "team " (team) } } }
                            dl {
                                dt { "Hostname" } dd { code.hostname { (it["hostname"].as_str().unwrap_or("")) } }
                                @if let Some(providers) = it["providers"].as_object() {
                                    @for p in Provider::ALL {
                                        @if let Some(v) = providers.get(p.as_str()) {
                                            dt { (provider_title(p)) } dd data-provider=(p.as_str()) { (source_summary(v)) }
                                        }
                                    }
                                }
                                @if let Some(fields) = it["fields"].as_str() { dt { "Fields" } dd { (fields) } }
                                dt { "Attached to" }
                                dd {
                                    @let specs = it["attachments"].as_array().cloned().unwrap_or_default();
                                    @if specs.is_empty() { "nothing yet" }
                                    ul.attachments {
                                        @for spec in &specs {
                                            @let spec = spec.as_str().unwrap_or("");
                                            li {
                                                code { (spec) }
                                                form.inline method="post" action="/integrations/action" {
                                                    input type="hidden" name="csrf" value=(csrf);
                                                    input type="hidden" name="do" value="detach";
                                                    (target_hidden(name, team))
                                                    input type="hidden" name="spec" value=(spec);
                                                    button.small type="submit" aria-label=(format!("Detach {name} from {spec}")) { "Detach" }
                                                }
                                            }
                                        }
                                    }
                                }
                                @let comment = it["comment"].as_str().unwrap_or("");
                                @if !comment.is_empty() { dt { "Comment" } dd { (comment) } }
                            }
                            div.actions {
                                a.button href=(format!("/integrations/edit?{q}")) aria-label=(format!("Edit {name}")) { "Edit" }
                                @if kind == "llm" && it["providers"].as_object().is_some_and(|p| p.values().any(|v| v["source"] == "byok" || v["source"] == "custom")) {
                                    form.inline method="post" action="/integrations/action" {
                                        input type="hidden" name="csrf" value=(csrf);
                                        input type="hidden" name="do" value="test";
                                        (target_hidden(name, team))
                                        button type="submit" aria-label=(format!("Test the stored keys and endpoints of {name}")) { "Test" }
                                    }
                                }
                                a.button.danger href=(format!("/integrations/remove?{q}")) aria-label=(format!("Remove {name}")) { "Remove" }
                            }
                            details {
                                summary { "Rename " span.visually-hidden { (name) } }
                                form method="post" action="/integrations/action" {
                                    input type="hidden" name="csrf" value=(csrf);
                                    input type="hidden" name="do" value="rename";
                                    (target_hidden(name, team))
                                    label for=(format!("rename-{i}")) { "New name" }
                                    input id=(format!("rename-{i}")) name="new_name" required autocomplete="off" value=(name);
                                    button type="submit" { "Rename" }
                                }
                            }
                            details {
                                summary { "Attach " span.visually-hidden { (name) } }
                                form method="post" action="/integrations/action" {
                                    input type="hidden" name="csrf" value=(csrf);
                                    input type="hidden" name="do" value="attach";
                                    (target_hidden(name, team))
                                    (attach_fields(ctx, scopes, Some(team), &format!("attach-{i}"), false, "vm"))
                                    button type="submit" { "Attach" }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// What the LLM dialog shows: a new integration, one being edited, or a
/// form sent back with an error (keys never come back).
#[derive(Debug, Clone, Default)]
pub struct LlmForm {
    /// Editing an existing integration.
    pub editing: bool,
    /// Its name (hidden, for an edit).
    pub original: String,
    /// The name field.
    pub name: String,
    /// The owning team, empty for personal.
    pub owner: String,
    /// The comment.
    pub comment: String,
    /// Each provider's source.
    pub sources: [String; 3],
    /// Each provider's stored key hint (edit only).
    pub hints: [String; 3],
    /// Each provider's custom endpoint URL.
    pub urls: [String; 3],
    /// Each provider's custom endpoint authentication (`none`, `bearer`,
    /// `header`).
    pub auths: [String; 3],
    /// Each provider's custom endpoint header name.
    pub headers: [String; 3],
    /// The ChatGPT account for OpenAI.
    pub account: String,
    /// The attachment choice (`none`, `vm`, `tag`, `auto`).
    pub attach: String,
    /// Protocol translation: `off`, or on (anything else).
    pub translate: String,
}

impl LlmForm {
    /// A new integration named `name` (a name the user has not used),
    /// every provider on the gateway, `auto:all`.
    pub fn new_default(name: String) -> Self {
        LlmForm {
            name,
            sources: ["gateway".into(), "gateway".into(), "gateway".into()],
            attach: "auto".into(),
            ..LlmForm::default()
        }
    }

    /// An existing integration, from its `integrations show --json` view.
    pub fn from_view(v: &Value) -> Self {
        let mut f = LlmForm {
            editing: true,
            original: v["name"].as_str().unwrap_or("").into(),
            name: v["name"].as_str().unwrap_or("").into(),
            owner: v["owner"]["team"].as_str().unwrap_or("").into(),
            comment: v["comment"].as_str().unwrap_or("").into(),
            translate: if v["translate"] == false { "off" } else { "on" }.into(),
            ..LlmForm::default()
        };
        for p in Provider::ALL {
            let s = &v["providers"][p.as_str()];
            f.sources[p.index()] = s["source"].as_str().unwrap_or("gateway").into();
            if let Some(hint) = s["key"].as_str() {
                f.hints[p.index()] = hint.into();
            }
            if let Some(a) = s["account"].as_str() {
                f.account = a.into();
            }
            f.urls[p.index()] = s["url"].as_str().unwrap_or("").into();
            f.auths[p.index()] = s["auth"].as_str().unwrap_or("none").into();
            f.headers[p.index()] = s["header"].as_str().unwrap_or("").into();
        }
        f
    }

    /// Takes the stored key hints of `stored` (a form sent back while
    /// editing shows what is kept).
    pub fn keep_hints(&mut self, stored: &LlmForm) {
        self.hints = stored.hints.clone();
    }

    /// A form sent back (keys are left out on purpose).
    pub fn from_fields(fields: &Fields, editing: bool) -> Self {
        let mut f = LlmForm {
            editing,
            original: field(fields, "original").into(),
            name: typed(fields, "name").into(),
            owner: field(fields, "owner").into(),
            comment: typed(fields, "comment").into(),
            account: field(fields, "openai_account").into(),
            attach: field(fields, "attach").into(),
            translate: field(fields, "translate").into(),
            ..LlmForm::default()
        };
        if editing {
            f.name = f.original.clone();
        }
        for p in Provider::ALL {
            f.sources[p.index()] = field(fields, p.as_str()).into();
            f.urls[p.index()] = typed(fields, &format!("{p}_url")).into();
            f.auths[p.index()] = field(fields, &format!("{p}_auth")).into();
            f.headers[p.index()] = typed(fields, &format!("{p}_header")).into();
        }
        f
    }
}

/// Which field an executor message is about: a provider, `attach`,
/// `owner`, `name`, `comment`, or `form` (the whole form).
pub fn error_field(message: &str) -> &'static str {
    let m = message.to_ascii_lowercase();
    // A message that starts with a flag is about that flag, whatever
    // other flags its advice names.
    if let Some(rest) = m.strip_prefix("--") {
        let flag = rest
            .split(|c: char| !(c.is_ascii_lowercase() || c == '-'))
            .next()
            .unwrap_or("");
        match flag {
            "comment" => return "comment",
            "fields" => return "fields",
            "name" => return "name",
            "team" => return "owner",
            "attach" => return "attach",
            _ => {}
        }
        for p in Provider::ALL {
            if flag.starts_with(p.as_str()) {
                return p.as_str();
            }
        }
    }
    for p in Provider::ALL {
        if m.contains(&format!("--{}", p.as_str())) || m.contains(&format!("{} key", p.as_str())) {
            return p.as_str();
        }
    }
    if m.contains("chatgpt account") {
        return "openai";
    }
    if m.contains("--attach")
        || m.contains(" vm ")
        || m.contains("vm named")
        || m.contains("attach")
    {
        return "attach";
    }
    if m.contains("--team") || m.contains("team named") {
        return "owner";
    }
    if m.contains("--name") || m.contains("integration named") || m.contains("name") {
        return "name";
    }
    if m.contains("--comment") {
        return "comment";
    }
    if m.contains("--fields") || m.contains("field") {
        return "fields";
    }
    "form"
}

/// `at` if the dialog shows that field (one of `shown`), else `form` (the
/// message goes at the top of the form).
pub fn placed(at: &str, shown: &[&'static str]) -> &'static str {
    shown.iter().find(|f| **f == at).copied().unwrap_or("form")
}

fn field_error(at: Option<(&str, &str)>, here: &str) -> Markup {
    html! {
        @if let Some((f, message)) = at {
            @if f == here { p.field-error id=(format!("{here}-error")) role="alert" { (message) } }
        }
    }
}

fn described(at: Option<(&str, &str)>, here: &str) -> Option<String> {
    at.filter(|(f, _)| *f == here)
        .map(|_| format!("{here}-error"))
}

/// The LLM dialog, to add or edit.
pub fn llm_dialog(
    ctx: &PageContext,
    scopes: &VmScopes,
    csrf: &str,
    form: &LlmForm,
    error: Option<(&str, &str)>,
) -> Markup {
    let title = if form.editing {
        format!("Edit {}", form.original)
    } else {
        "Add an LLM integration".to_owned()
    };
    let scope = if form.owner.is_empty() { "int" } else { "team" };
    layout(
        &title,
        Some((ctx, csrf)),
        "/integrations",
        html! {
            section.card.dialog aria-labelledby="dialog-title" {
                h1 #dialog-title { (title) }
                (field_error(error, "form"))
                form #llm-form method="post" action=(if form.editing { "/integrations/save" } else { "/integrations/add-llm" }) novalidate {
                    input type="hidden" name="csrf" value=(csrf);
                    @if form.editing {
                        input type="hidden" name="original" value=(form.original);
                        input type="hidden" name="owner" value=(form.owner);
                        p { "Hostname: " code #hostname data-domain=(ctx.domain) { (form.original) "." (scope) "." (ctx.domain) } }
                        p.help { "Rename, attach and detach from the integrations list." }
                    } @else {
                        label for="name" { "Name" }
                        input #name name="name" value=(form.name) required autocomplete="off" spellcheck="false"
                            aria-invalid=[described(error, "name").map(|_| "true")]
                            aria-describedby=(described(error, "name").unwrap_or_else(|| "hostname-line".into()));
                        (field_error(error, "name"))
                        p #hostname-line .help aria-live="polite" { "VMs reach it at " code #hostname data-domain=(ctx.domain) { (form.name) "." (scope) "." (ctx.domain) } }
                        fieldset {
                            legend { "Owner" }
                            (radio("owner-me", "owner", "", form.owner.is_empty(), "Personal"))
                            @for t in &ctx.teams {
                                (radio(&format!("owner-{t}"), "owner", t, form.owner == *t, &format!("Team {t}")))
                            }
                            (field_error(error, "owner"))
                        }
                    }
                    @for p in Provider::ALL {
                        @let ps = p.as_str();
                        @let current = form.sources[p.index()].as_str();
                        fieldset.provider data-provider=(ps) aria-describedby=[described(error, ps)] {
                            legend { (provider_title(p)) }
                            @for s in SOURCES {
                                @if s != "chatgpt" || p == Provider::OpenAi {
                                    (radio(&format!("{ps}-{s}"), ps, s, current == s, source_title(s)))
                                }
                            }
                            div.key data-for="byok" {
                                label for=(format!("{ps}-key")) { (provider_title(p)) " API key" }
                                div.row {
                                    input id=(format!("{ps}-key")) type="password" name=(format!("{ps}_key")) autocomplete="off" spellcheck="false"
                                        aria-describedby=(format!("{ps}-test"));
                                    button.test type="button" data-provider=(ps) { "Test" }
                                }
                                output id=(format!("{ps}-test")) role="status" aria-live="polite" {
                                    @let hint = &form.hints[p.index()];
                                    @if !hint.is_empty() && form.sources[p.index()] == "byok" { "A key is stored: " (hint) ". Leave the field empty to keep it." }
                                }
                            }
                            div.key data-for="custom" {
                                @let url = &form.urls[p.index()];
                                @let auth = match form.auths[p.index()].as_str() { "" => "none", a => a };
                                @let stored = if form.editing && form.hints[p.index()].is_empty() { "" } else { form.hints[p.index()].as_str() };
                                label for=(format!("{ps}-url")) { (provider_title(p)) " endpoint URL" }
                                input id=(format!("{ps}-url")) type="url" name=(format!("{ps}_url")) value=(url) autocomplete="off" spellcheck="false"
                                    placeholder="https://models.example.com/v1" aria-describedby=(format!("{ps}-url-help"));
                                p.help id=(format!("{ps}-url-help")) { "HTTPS only; the base URL its API paths go under (" code { "/v1/models" } " lists its models)." }
                                fieldset.auth {
                                    legend { "Authentication" }
                                    @for a in AUTHS {
                                        (radio(&format!("{ps}-auth-{a}"), &format!("{ps}_auth"), a, auth == a, auth_title(a)))
                                    }
                                    div.auth-fields data-auth="bearer" {
                                        label for=(format!("{ps}-token")) { (provider_title(p)) " bearer token" }
                                        input id=(format!("{ps}-token")) type="password" name=(format!("{ps}_token")) autocomplete="off" spellcheck="false";
                                    }
                                    div.auth-fields data-auth="header" {
                                        label for=(format!("{ps}-header")) { (provider_title(p)) " header name" }
                                        input id=(format!("{ps}-header")) name=(format!("{ps}_header")) value=(form.headers[p.index()]) autocomplete="off" spellcheck="false" placeholder="x-api-key";
                                        label for=(format!("{ps}-header-value")) { (provider_title(p)) " header value" }
                                        input id=(format!("{ps}-header-value")) type="password" name=(format!("{ps}_header_value")) autocomplete="off" spellcheck="false";
                                    }
                                }
                                div.row {
                                    button.test-endpoint type="button" data-provider=(ps) aria-describedby=(format!("{ps}-endpoint-test")) { "Test" }
                                }
                                output id=(format!("{ps}-endpoint-test")) role="status" aria-live="polite" {
                                    @if !stored.is_empty() && form.sources[p.index()] == "custom" && auth != "none" { "A credential is stored: " (stored) ". Leave the field empty to keep it." }
                                }
                            }
                            @if p == Provider::OpenAi {
                                div.key data-for="chatgpt" {
                                    label for="openai-account" { "ChatGPT account" }
                                    select #openai-account name="openai_account" {
                                        @for a in &ctx.chatgpt_accounts { option value=(a) selected[*a == form.account] { (a) } }
                                    }
                                    @if ctx.chatgpt_accounts.is_empty() { p.help { "No account connected yet: " a href="/chatgpt" { "connect a ChatGPT account" } " first. Personal integrations only." } }
                                    @else { p.help { "Personal integrations only." } }
                                }
                            }
                            (field_error(error, ps))
                        }
                    }
                    fieldset #translate aria-describedby="translate-help" {
                        legend { "Protocol translation" }
                        (radio("translate-on", "translate", "on", form.translate != "off", "On: Claude Code may use OpenAI models, Codex and the OpenAI SDKs Claude models"))
                        (radio("translate-off", "translate", "off", form.translate == "off", "Off: each client uses its own provider's models"))
                        p.help #translate-help { "The gateway translates between the Anthropic and OpenAI APIs; what has no counterpart is named in the answer's llm-integration-dropped header." }
                        (field_error(error, "translate"))
                    }
                    @if !form.editing {
                        (attach_fields(ctx, scopes, ctx.teams.is_empty().then_some(""), "apply", true, &form.attach))
                        (field_error(error, "attach"))
                    }
                    label for="comment" { "Comment (optional)" }
                    input #comment name="comment" value=(form.comment) autocomplete="off"
                        aria-describedby=[described(error, "comment")] aria-invalid=[described(error, "comment").map(|_| "true")];
                    p.help { "VMs may read the comment through a reflection integration: no keys in it." }
                    (field_error(error, "comment"))
                    div.actions {
                        button.primary type="submit" { @if form.editing { "Save changes" } @else { "Add integration" } }
                        a.button href="/integrations" { "Cancel" }
                    }
                }
            }
        },
    )
}

/// The reflection dialog.
pub fn reflection_dialog(
    ctx: &PageContext,
    scopes: &VmScopes,
    csrf: &str,
    fields: &Fields,
    error: Option<(&str, &str)>,
) -> Markup {
    let name = match typed(fields, "name") {
        "" => "reflection",
        n => n,
    };
    layout(
        "Add a reflection integration",
        Some((ctx, csrf)),
        "/integrations",
        html! {
            section.card.dialog aria-labelledby="dialog-title" {
                h1 #dialog-title { "Add a reflection integration" }
                p { "VMs read their owner's email, their integrations, tags and comment from it." }
                (field_error(error, "form"))
                form method="post" action="/integrations/add-reflection" {
                    input type="hidden" name="csrf" value=(csrf);
                    label for="name" { "Name" }
                    input #name name="name" value=(name) required autocomplete="off"
                        aria-describedby=(described(error, "name").unwrap_or_else(|| "hostname-line".into()));
                    (field_error(error, "name"))
                    p #hostname-line .help { "VMs reach it at " code #hostname data-domain=(ctx.domain) { (name) ".int." (ctx.domain) } }
                    label for="fields" { "Fields (all, or a list such as email,integrations)" }
                    input #fields name="fields" value=(match typed(fields, "fields") { "" => "all", f => f }) autocomplete="off";
                    (field_error(error, "fields"))
                    @if !ctx.teams.is_empty() {
                        fieldset {
                            legend { "Owner" }
                            (radio("owner-me", "owner", "", field(fields, "owner").is_empty(), "Personal"))
                            @for t in &ctx.teams { (radio(&format!("owner-{t}"), "owner", t, field(fields, "owner") == t, &format!("Team {t}"))) }
                            (field_error(error, "owner"))
                        }
                    }
                    (attach_fields(ctx, scopes, ctx.teams.is_empty().then_some(""), "apply", true, match field(fields, "attach") { "" => "auto", a => a }))
                    (field_error(error, "attach"))
                    label for="comment" { "Comment (optional)" }
                    input #comment name="comment" value=(typed(fields, "comment")) autocomplete="off"
                        aria-describedby=[described(error, "comment")];
                    (field_error(error, "comment"))
                    div.actions {
                        button.primary type="submit" { "Add integration" }
                        a.button href="/integrations" { "Cancel" }
                    }
                }
            }
        },
    )
}

/// Editing a reflection integration: its fields and comment.
pub fn reflection_edit_dialog(
    ctx: &PageContext,
    csrf: &str,
    view: &Value,
    error: Option<(&str, &str)>,
) -> Markup {
    let name = view["name"].as_str().unwrap_or("");
    let team = view["owner"]["team"].as_str().unwrap_or("");
    let title = format!("Edit {name}");
    layout(
        &title,
        Some((ctx, csrf)),
        "/integrations",
        html! {
            section.card.dialog aria-labelledby="dialog-title" {
                h1 #dialog-title { (title) }
                p { "Hostname: " code { (view["hostname"].as_str().unwrap_or("")) } }
                (field_error(error, "form"))
                form method="post" action="/integrations/save-reflection" {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="original" value=(name);
                    input type="hidden" name="owner" value=(team);
                    label for="fields" { "Fields (all, or a list such as email,integrations)" }
                    input #fields name="fields" value=(view["fields"].as_str().unwrap_or("all")) autocomplete="off"
                        aria-describedby=[described(error, "fields")];
                    (field_error(error, "fields"))
                    label for="comment" { "Comment (optional)" }
                    input #comment name="comment" value=(view["comment"].as_str().unwrap_or("")) autocomplete="off"
                        aria-describedby=[described(error, "comment")];
                    (field_error(error, "comment"))
                    div.actions {
                        button.primary type="submit" { "Save changes" }
                        a.button href="/integrations" { "Cancel" }
                    }
                }
            }
        },
    )
}

/// Confirming a removal.
pub fn remove_dialog(ctx: &PageContext, csrf: &str, view: &Value) -> Markup {
    let name = view["name"].as_str().unwrap_or("");
    let team = view["owner"]["team"].as_str().unwrap_or("");
    layout(
        &format!("Remove {name}"),
        Some((ctx, csrf)),
        "/integrations",
        html! {
            section.card.dialog role="alertdialog" aria-labelledby="dialog-title" aria-describedby="dialog-desc" {
                h1 #dialog-title { "Remove " (name) "?" }
                p #dialog-desc { "VMs will no longer reach " code { (view["hostname"].as_str().unwrap_or("")) } ". Stored keys of this integration are deleted. This cannot be undone." }
                form method="post" action="/integrations/action" {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="do" value="remove";
                    (target_hidden(name, team))
                    div.actions {
                        a.button href="/integrations" autofocus { "Cancel" }
                        button.danger type="submit" { "Remove " (name) }
                    }
                }
            }
        },
    )
}

/// The ChatGPT accounts page and its connect form.
pub fn chatgpt(
    ctx: &PageContext,
    csrf: &str,
    accounts: &Value,
    n: Option<&Notice>,
    verified: Option<&Value>,
) -> Markup {
    let list = accounts["accounts"].as_array().cloned().unwrap_or_default();
    layout(
        "ChatGPT accounts",
        Some((ctx, csrf)),
        "/chatgpt",
        html! {
            h1 { "ChatGPT subscription" }
            (notice(n))
            section.card.dialog aria-labelledby="connect-heading" {
                h2 #connect-heading { "Connect an account" }
                p { "Device code login must be enabled in your ChatGPT security settings (or your workspace's permissions)." }
                form method="post" action="/chatgpt/connect" {
                    input type="hidden" name="csrf" value=(csrf);
                    label for="account" { "Account name (yours to choose, such as work)" }
                    input #account name="account" required autocomplete="off" spellcheck="false";
                    button.primary type="submit" { "Connect account" }
                }
            }
            section aria-labelledby="accounts-heading" {
                h2 #accounts-heading { "Connected accounts" }
                @if list.is_empty() { p { "No ChatGPT accounts connected." } }
                @else {
                    table.data.accounts {
                        caption.visually-hidden { "Connected ChatGPT accounts" }
                        thead { tr { th scope="col" { "Name" } th scope="col" { "Status" } th scope="col" { "Email" } th scope="col" { "Plan" } th scope="col" { span.visually-hidden { "Actions" } } } }
                        tbody {
                            @for a in &list {
                                @let name = a["name"].as_str().unwrap_or("");
                                tr data-account=(name) {
                                    th scope="row" data-label="Name" { (name) }
                                    td data-label="Status" { (a["status"].as_str().unwrap_or("")) }
                                    td data-label="Email" { (a["email"].as_str().unwrap_or("-")) }
                                    td data-label="Plan" { (a["plan"].as_str().unwrap_or("-")) }
                                    td.row-actions {
                                        a.button.small.danger href=(format!("/chatgpt/disconnect?account={name}")) aria-label=(format!("Disconnect {name}")) { "Disconnect" }
                                    }
                                }
                            }
                        }
                    }
                    form method="post" action="/chatgpt/manage" {
                        input type="hidden" name="csrf" value=(csrf);
                        input type="hidden" name="do" value="verify";
                        button type="submit" { "Verify" }
                    }
                }
                @if let Some(v) = verified {
                    ul.verified role="status" {
                        @for a in v["accounts"].as_array().cloned().unwrap_or_default() {
                            li.ok[a["ok"] == true] .error[a["ok"] != true] { (a["name"].as_str().unwrap_or("")) ": " (a["detail"].as_str().unwrap_or("")) }
                        }
                    }
                }
            }
        },
    )
}

/// Confirming a ChatGPT account's disconnection, naming the integrations
/// that use it.
pub fn disconnect_dialog(ctx: &PageContext, csrf: &str, account: &str, users: &[String]) -> Markup {
    layout(
        &format!("Disconnect {account}"),
        Some((ctx, csrf)),
        "/chatgpt",
        html! {
            section.card.dialog role="alertdialog" aria-labelledby="dialog-title" aria-describedby="dialog-desc" {
                h1 #dialog-title { "Disconnect ChatGPT account " (account) "?" }
                div #dialog-desc {
                    @if users.is_empty() {
                        p { "No integration uses it. Its tokens are deleted from the gateway." }
                    } @else {
                        p { "These integrations use it for OpenAI; their OpenAI requests fail until you connect an account named " code { (account) } " again or change their source:" }
                        ul.users { @for u in users { li { code { (u) } } } }
                    }
                }
                form method="post" action="/chatgpt/manage" {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="do" value="disconnect";
                    input type="hidden" name="account" value=(account);
                    div.actions {
                        a.button href="/chatgpt" autofocus { "Cancel" }
                        button.danger type="submit" { "Disconnect " (account) }
                    }
                }
            }
        },
    )
}

/// A ChatGPT device-code login as its screen shows it.
pub struct DeviceLogin<'a> {
    /// The login's id on this server.
    pub id: &'a str,
    /// The account name it connects.
    pub account: &'a str,
    /// Where to enter the code.
    pub url: &'a str,
    /// The one-time code.
    pub code: &'a str,
    /// `waiting`, `connected` or `failed`.
    pub state: &'a str,
    /// What to say of where it stands.
    pub status: String,
}

/// The device-code step: the link, the code shown large, where the
/// login stands, and `error` when Done was clicked before ChatGPT
/// confirmed.
pub fn chatgpt_waiting(
    ctx: &PageContext,
    csrf: &str,
    login: &DeviceLogin<'_>,
    error: Option<&str>,
) -> Markup {
    let DeviceLogin {
        id,
        account,
        url,
        code,
        state,
        ref status,
    } = *login;
    layout(
        "Connect ChatGPT",
        Some((ctx, csrf)),
        "/chatgpt",
        html! {
            section.card.dialog aria-labelledby="dialog-title" {
                h1 #dialog-title { "Connect ChatGPT account " (account) }
                @if let Some(e) = error { p #login-error .notice.error role="alert" { (e) } }
                ol.steps {
                    li { a.button.primary href=(url) target="_blank" rel="noopener noreferrer" { "Open ChatGPT" } " and sign in." }
                    li { "Enter this code:" p.code aria-label=(format!("One-time code {code}")) { (code) } }
                    li { "Come back here and click " strong { "Done signing in" } "." }
                }
                p.help { "Device codes are a common phishing target. Never share this code." }
                p #login-status .waiting.connected[state == "connected"].failed[state == "failed"] role="status" aria-live="polite" data-login=(id) { (status) }
                div.actions {
                    form.inline method="post" action="/chatgpt/done" {
                        input type="hidden" name="csrf" value=(csrf);
                        input type="hidden" name="id" value=(id);
                        button.primary type="submit" { "Done signing in" }
                    }
                    form.inline method="post" action="/chatgpt/cancel" {
                        input type="hidden" name="csrf" value=(csrf);
                        input type="hidden" name="id" value=(id);
                        button type="submit" { "Cancel" }
                    }
                }
            }
        },
    )
}

const PALETTE: [&str; 8] = [
    "#2563eb", "#d97706", "#059669", "#db2777", "#7c3aed", "#0891b2", "#65a30d", "#dc2626",
];

fn chart(report: &UsageReport) -> Markup {
    // The largest day's figure is written above the plot, left-aligned,
    // so the left margin only holds `$0`; the margins leave room for the
    // text drawn larger at phone width (the stylesheet's 24 units).
    let (w, h, left, bottom, top) = (720.0_f64, 280.0_f64, 44.0_f64, 40.0_f64, 36.0_f64);
    let n = report.day_labels.len().max(1);
    let totals: Vec<u64> = (0..n)
        .map(|i| {
            report
                .series
                .values()
                .map(|v| v.get(i).copied().unwrap_or(0))
                .sum()
        })
        .collect();
    let max = totals.iter().copied().max().unwrap_or(0).max(1) as f64;
    let slot = (w - left - 8.0) / n as f64;
    let bar = (slot * 0.7).max(2.0);
    let scale = (h - bottom - top) / max;
    let total_all: u64 = totals.iter().sum();
    let summary = format!(
        "Spend per day over the last {} days, by {}: {} in all; the table below lists the figures.",
        report.days,
        report.by,
        dollars(i64::try_from(total_all).unwrap_or(i64::MAX))
    );
    let mut rects = Vec::new();
    for i in 0..n {
        let x = left + slot * i as f64 + (slot - bar) / 2.0;
        let mut y = h - bottom;
        for (k, (key, values)) in report.series.iter().enumerate() {
            let v = values.get(i).copied().unwrap_or(0);
            if v == 0 {
                continue;
            }
            let bh = (v as f64 * scale).max(1.0);
            y -= bh;
            let day = report.day_labels.get(i).map(String::as_str).unwrap_or("");
            let title = format!("{day} · {key}: {}", dollars(v as i64));
            rects.push((x, y, bar, bh, PALETTE[k % PALETTE.len()], title));
        }
    }
    html! {
        figure.chart {
            svg viewBox=(format!("0 0 {w} {h}")) role="img" aria-label=(summary) xmlns="http://www.w3.org/2000/svg" {
                line x1=(left) y1=(h - bottom) x2=(w - 4.0) y2=(h - bottom) stroke="#888" {}
                line x1=(left) y1=(top) x2=(w - 4.0) y2=(top) stroke="#ccc" stroke-dasharray="4 4" {}
                text x="4" y=(top - 8.0) font-size="12" { (dollars(max as i64)) }
                text x=(left - 6.0) y=(h - bottom) text-anchor="end" font-size="12" { "$0" }
                @for (x, y, bw, bh, color, title) in &rects {
                    rect x=(format!("{x:.1}")) y=(format!("{y:.1}")) width=(format!("{bw:.1}")) height=(format!("{bh:.1}")) fill=(color) { title { (title) } }
                }
                // Day labels counted back from today: about seven at
                // desktop width, about four (the others marked `minor`) at
                // phone width.
                @let step = n.div_ceil(7).max(1);
                @for i in (0..n).filter(|i| (n - 1 - i) % step == 0) {
                    @let x = left + slot * i as f64 + slot / 2.0;
                    @let anchor = if i + 1 == n { "end" } else if i == 0 { "start" } else { "middle" };
                    @let x = match anchor { "start" => x - bar / 2.0, "end" => x + bar / 2.0, _ => x };
                    text class=[((n - 1 - i) % (2 * step) != 0).then_some("minor")] x=(format!("{x:.1}")) y=(h - 10.0) text-anchor=(anchor) font-size="12" { (report.day_labels.get(i).map(|d| d.get(5..).unwrap_or(d)).unwrap_or("")) }
                }
            }
            figcaption {
                @if total_all == 0 { p { "No spend in this period." } }
                ul.legend {
                    @for (k, key) in report.series.keys().enumerate() {
                        li { svg.swatch width="12" height="12" viewBox="0 0 12 12" aria-hidden="true" { rect width="12" height="12" fill=(PALETTE[k % PALETTE.len()]) {} } " " (key) }
                    }
                }
            }
        }
    }
}

/// The usage controls: whose usage, split by what, over how many days.
fn usage_controls(ctx: &PageContext, by: &str, days: u32, team: &str) -> Markup {
    html! {
        form.controls method="get" action="/usage" {
            @if !ctx.teams.is_empty() {
                span.control {
                    label for="team" { "Whose" }
                    select #team name="team" {
                        option value="" selected[team.is_empty()] { "Mine" }
                        @for t in &ctx.teams { option value=(t) selected[t == team] { "Team " (t) } }
                    }
                }
            }
            span.control {
                label for="by" { "Split by" }
                select #by name="by" {
                    @for b in ["integration", "model", "vm"] { option value=(b) selected[b == by] { (b) } }
                }
            }
            span.control {
                label for="days" { "Period" }
                select #days name="days" {
                    @let choices = [1u32, 7, 14, 30, 90, 366];
                    @if !choices.contains(&days) { option value=(days) selected { "last " (days) " days" } }
                    @for d in choices { option value=(d) selected[d == days] { @if d == 1 { "today" } @else { "last " (d) " days" } } }
                }
            }
            button type="submit" { "Show" }
        }
    }
}

/// The usage page: allocation left, spend per day, the table with the
/// columns of the `usage` command's report.
pub fn usage(ctx: &PageContext, csrf: &str, report: &UsageReport) -> Markup {
    let whose = if report.team.is_empty() {
        String::new()
    } else {
        format!(" --team {}", report.team)
    };
    layout(
        "Usage",
        Some((ctx, csrf)),
        "/usage",
        html! {
            h1 { "Usage" @if !report.team.is_empty() { " of team " (report.team) } }
            p.allocation { "Allocation left: " strong #allocation { (dollars(report.allocation_micros)) } " (spent on the platform's keys)" }
            (usage_controls(ctx, report.by, report.days, &report.team))
            (chart(report))
            p #usage-command .help { "The table holds the same figures as " code { "usage --since " (report.day_labels.first().map(String::as_str).unwrap_or("")) " --by " (report.by) (whose) } "." }
            // Wider than a phone: it scrolls in its own box, not the page.
            div.table-scroll tabindex="0" role="region" aria-labelledby="usage-caption" {
                table.data #usage-table {
                    caption #usage-caption { "Usage in the last " (report.days) " days, by " (report.by) }
                    thead { tr {
                        th scope="col" { (report.by) }
                        @for (title, _) in USAGE_COLUMNS { th scope="col" { (title) } }
                        th scope="col" { "Cost" } th scope="col" { "Debited" }
                    } }
                    tbody {
                        @if report.rows.is_empty() { tr { td colspan=(USAGE_COLUMNS.len() + 3) { "No requests in this period." } } }
                        @for r in &report.rows {
                            tr {
                                th scope="row" { (super::usage::unescaped(r["key"].as_str().unwrap_or(""))) }
                                @for (_, member) in USAGE_COLUMNS { td.num { (r[member].as_u64().unwrap_or(0)) } }
                                td.num { (dollars(r["cost_micros"].as_i64().unwrap_or(0))) }
                                td.num { (dollars(r["debited_micros"].as_i64().unwrap_or(0))) }
                            }
                        }
                    }
                }
            }
            p.help { "Requests: ok answered below 400, refused 4xx, failed 5xx or no answer. Estimated: tokens the gateway estimated (the provider's usage report never came). Input is uncached input; cache write and cache read are counted apart. Cost at list prices in US dollars; debited is the part charged to the allocation (gateway sources only)." }
        },
    )
}

/// The usage report's count columns: title and `usage --json` member.
const USAGE_COLUMNS: [(&str, &str); 9] = [
    ("Requests", "requests"),
    ("OK", "ok_requests"),
    ("Refused", "refused_requests"),
    ("Failed", "failed_requests"),
    ("Estimated", "estimated_requests"),
    ("Input tokens", "input_tokens"),
    ("Cache write", "cache_creation_tokens"),
    ("Cache read", "cache_read_tokens"),
    ("Output tokens", "output_tokens"),
];

/// The usage page when the figures cannot be shown (a bad period, a team
/// the user is not in): the controls and why.
pub fn usage_refused(ctx: &PageContext, csrf: &str, why: &str) -> Markup {
    layout(
        "Usage",
        Some((ctx, csrf)),
        "/usage",
        html! {
            h1 { "Usage" }
            p.notice.error role="alert" { (why) }
            (usage_controls(ctx, "integration", super::usage::DEFAULT_DAYS, ""))
        },
    )
}
