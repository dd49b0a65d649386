mod admin;
mod cache;
mod chat;
mod errors;
mod limits;
mod ledger;
mod upstream_failures;
