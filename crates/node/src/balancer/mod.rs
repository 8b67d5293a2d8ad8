//! Load balancers kept in sync with placements: a clone that names a balancer has its
//! running, healthy copies as that balancer's backend servers. `haproxy` speaks HAProxy's
//! Runtime API (sans-IO: it reads `show servers state` and says which commands bring the
//! backend to what is wanted; `admin_socket` sends them). `config_file` writes the servers
//! back into HAProxy's configuration so a reload keeps them; `syncer` runs it all on a host
//! for the load balancer copies it runs, from their assignments.

pub mod admin_socket;
pub mod config_file;
pub mod haproxy;
pub mod syncer;
