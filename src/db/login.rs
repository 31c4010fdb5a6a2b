//! What a database login may do beyond its grants: the engine refuses to hand tenants' queries to
//! a login that could reach more than the views, and warns when its own login is privileged.

use sqlx::PgConnection;

/// Attributes and memberships of the connected login that widen its reach.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LoginReach {
    pub role: String,
    pub superuser: bool,
    pub bypass_rls: bool,
    pub create_role: bool,
    pub create_db: bool,
    pub replication: bool,
    /// Member of the predefined roles that read or write any data or server files.
    pub predefined_data_roles: bool,
}

impl LoginReach {
    /// The connected login's reach.
    pub async fn of(conn: &mut PgConnection) -> Result<Self, sqlx::Error> {
        sqlx::query_as(
            "SELECT r.rolname::text AS role, r.rolsuper AS superuser, r.rolbypassrls AS bypass_rls,
                    r.rolcreaterole AS create_role, r.rolcreatedb AS create_db,
                    r.rolreplication AS replication,
                    EXISTS (SELECT 1 FROM pg_roles p
                            WHERE p.rolname IN ('pg_read_all_data', 'pg_write_all_data',
                                                'pg_read_server_files', 'pg_write_server_files',
                                                'pg_execute_server_program')
                              AND pg_has_role(r.oid, p.oid, 'USAGE')) AS predefined_data_roles
             FROM pg_roles r WHERE r.rolname = current_user",
        )
        .fetch_one(conn)
        .await
    }

    /// Whether the login can do more than its grants allow.
    pub fn is_privileged(&self) -> bool {
        self.superuser
            || self.bypass_rls
            || self.create_role
            || self.create_db
            || self.replication
            || self.predefined_data_roles
    }
}

/// Whether the connected login is, or can act as, `role`.
pub async fn can_act_as(conn: &mut PgConnection, role: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT current_user = $1
             OR EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1 AND pg_has_role(current_user, oid, 'MEMBER'))",
    )
    .bind(role)
    .fetch_one(conn)
    .await
}
