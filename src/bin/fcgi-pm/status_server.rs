//! The status and ping pages, answered by the manager itself on each pool's
//! `pm.status_listen` socket (a FastCGI server of this crate, two threads), so they answer
//! when every child is busy, whatever the children are. Pools may share one status socket
//! when their paths differ. The pages are rendered from snapshots the main loop refreshes
//! every tick.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use fcgi::pm::endpoint;
use fcgi::pm::status::{self, Page, PoolStatus, Query};
use fcgi::server::ShutdownHandle;

use crate::config::{Config, ListenAddr};

#[derive(Clone, Debug)]
enum Route {
    Status(String),
    Ping(String),
}

struct Server {
    routes: Arc<RwLock<HashMap<String, Route>>>,
    stop: ShutdownHandle,
    thread: Option<JoinHandle<io::Result<()>>>,
}

/// Every status socket, and the pools' latest snapshots.
pub struct Hub {
    servers: HashMap<ListenAddr, Server>,
    snapshots: Arc<Mutex<HashMap<String, PoolStatus>>>,
}

fn bind_name(a: &ListenAddr) -> String {
    match a {
        ListenAddr::AnyPort(p) => format!("[::]:{p}"),
        other => other.to_string(),
    }
}

impl Hub {
    pub fn new() -> Hub {
        Hub {
            servers: HashMap::new(),
            snapshots: Arc::default(),
        }
    }

    /// Opens, keeps or closes status sockets and sets their routes for `cfg`.
    pub fn configure(&mut self, cfg: &Config) -> io::Result<()> {
        let mut wanted: HashMap<ListenAddr, HashMap<String, Route>> = HashMap::new();
        for p in &cfg.pools {
            let Some(addr) = &p.status_listen else {
                continue;
            };
            let routes = wanted.entry(addr.clone()).or_default();
            if let Some(s) = &p.status_path {
                routes.insert(s.clone(), Route::Status(p.name.clone()));
            }
            if let Some(s) = &p.ping_path {
                routes.insert(s.clone(), Route::Ping(p.ping_response()));
            }
        }
        let gone: Vec<ListenAddr> = self
            .servers
            .keys()
            .filter(|a| !wanted.contains_key(*a))
            .cloned()
            .collect();
        for a in gone {
            if let Some(mut s) = self.servers.remove(&a) {
                s.stop.shutdown();
                if let Some(t) = s.thread.take() {
                    let _ = t.join();
                }
            }
        }
        for (addr, routes) in wanted {
            if let Some(s) = self.servers.get(&addr) {
                *s.routes.write().unwrap_or_else(|e| e.into_inner()) = routes;
                continue;
            }
            let server = self.start(&addr, routes)?;
            self.servers.insert(addr, server);
        }
        Ok(())
    }

    fn start(&self, addr: &ListenAddr, routes: HashMap<String, Route>) -> io::Result<Server> {
        let mut config = fcgi::server::Config::default();
        config.workers = 2;
        config.handle_signals = false;
        config.allow = None;
        let server = fcgi::Server::bind(&bind_name(addr))
            .map_err(|e| io::Error::new(e.kind(), format!("pm.status_listen {addr}: {e}")))?
            .config_with(config);
        let routes = Arc::new(RwLock::new(routes));
        let stop = server.shutdown_handle();
        let r = Arc::clone(&routes);
        let snaps = Arc::clone(&self.snapshots);
        let thread = std::thread::Builder::new()
            .name("fcgi-pm-status".into())
            .spawn(move || {
                server.serve(move |req| {
                    let path = endpoint::request_path(req).to_string();
                    let route = r
                        .read()
                        .unwrap_or_else(|e| e.into_inner())
                        .get(&path)
                        .cloned();
                    match route {
                        Some(Route::Ping(response)) => {
                            endpoint::send_page(req, &Page::new("text/plain", response))
                        }
                        Some(Route::Status(pool)) => {
                            let snap = snaps
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .get(&pool)
                                .cloned();
                            match snap {
                                Some(s) => {
                                    let q = Query::parse(req.param("QUERY_STRING").unwrap_or(""));
                                    endpoint::send_page(req, &status::render(&s, &q))
                                }
                                None => req.respond(
                                    503,
                                    &[("Content-Type", "text/plain")],
                                    b"Server busy. Please try again later.\n",
                                ),
                            }
                        }
                        None => req.respond(
                            404,
                            &[("Content-Type", "text/plain")],
                            b"File not found.\n",
                        ),
                    }
                })
            })?;
        Ok(Server {
            routes,
            stop,
            thread: Some(thread),
        })
    }

    /// Publishes the pools' current numbers.
    pub fn publish(&self, snaps: Vec<PoolStatus>) {
        let mut g = self.snapshots.lock().unwrap_or_else(|e| e.into_inner());
        g.clear();
        for s in snaps {
            g.insert(s.pool.clone(), s);
        }
    }

    /// Closes every status socket.
    pub fn shutdown(&mut self) {
        for (_, mut s) in self.servers.drain() {
            s.stop.shutdown();
            if let Some(t) = s.thread.take() {
                let _ = t.join();
            }
        }
    }
}
