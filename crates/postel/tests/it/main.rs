//! Postel's one integration-test binary (one link step on 2 cores): the real
//! `postel` binary on loopback, driven by our client and by real ones.

mod audit;
mod authentication;
mod bench;
mod cli;
mod client;
mod client_names;
mod cluster;
mod dane;
mod delivery;
mod delivery_hosts;
mod delivery_smarthost;
mod dovecot;
mod durability;
mod forward;
mod interop;
mod local_delivery;
mod milter;
mod policy;
mod policyd_spf;
mod processes;
mod release;
mod requiretls;
mod rig;
mod robustness;
mod scram;
mod screening;
mod smtp;
mod support;
mod tls;
mod tools;
mod web;
mod webhook;
