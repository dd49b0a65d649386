mod admin;
mod cache;
mod chat;
mod errors;
mod ledger;
mod limits;
mod sdk;
mod upstream_failures;
