//! The SQL the leader runs to create the cluster spec's application users
//! and databases: idempotent (safe after every promotion), names quoted
//! (they are validated identifiers), users given their SCRAM verifier so
//! PostgreSQL and PgBouncer hold the identical string.

use crate::agent::render::UserView;
use crate::cluster::ClusterSpec;

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A psql script (it uses `\gexec` and `\connect`).
pub fn script(spec: &ClusterSpec, users: &[UserView]) -> String {
    let mut sql = String::from("SET password_encryption = 'scram-sha-256';\n");
    for user in users {
        sql.push_str(&format!(
            "SELECT format('CREATE ROLE %I LOGIN', {name}) WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {name})\\gexec\n",
            name = literal(&user.name)
        ));
        sql.push_str(&format!(
            "ALTER ROLE {} WITH LOGIN PASSWORD {};\n",
            ident(&user.name),
            literal(&user.scram)
        ));
    }
    for database in &spec.databases {
        sql.push_str(&format!(
            "SELECT format('CREATE DATABASE %I OWNER %I', {name}, {owner}) WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = {name})\\gexec\n",
            name = literal(&database.name),
            owner = literal(&database.owner)
        ));
    }
    for user in &spec.users {
        for database in &user.databases {
            sql.push_str(&format!(
                "GRANT CONNECT, TEMPORARY ON DATABASE {} TO {};\n",
                ident(database),
                ident(&user.name)
            ));
        }
    }
    for database in &spec.databases {
        if database.extensions.is_empty() {
            continue;
        }
        sql.push_str(&format!("\\connect {}\n", ident(&database.name)));
        for extension in &database.extensions {
            sql.push_str(&format!(
                "CREATE EXTENSION IF NOT EXISTS {};\n",
                ident(extension)
            ));
        }
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_users_databases_and_extensions_idempotently() {
        let spec = ClusterSpec::parse(
            r#"
[cluster]
name = "t"
cidr = "10.1.0.0/24"
[[db]]
name = "a"
ip = "10.1.0.2"
[[database]]
name = "app"
owner = "app_user"
extensions = ["vector"]
[[user]]
name = "app_user"
databases = ["app"]
"#,
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        let users = vec![UserView {
            name: "app_user".into(),
            scram: "SCRAM-SHA-256$4096:c2FsdA==$a:b".into(),
        }];
        let sql = script(&spec, &users);
        assert!(
            sql.contains(
                "WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app_user')\\gexec"
            ),
            "{sql}"
        );
        assert!(
            sql.contains(
                "ALTER ROLE \"app_user\" WITH LOGIN PASSWORD 'SCRAM-SHA-256$4096:c2FsdA==$a:b';"
            ),
            "{sql}"
        );
        assert!(
            sql.contains("CREATE DATABASE %I OWNER %I', 'app', 'app_user')"),
            "{sql}"
        );
        assert!(
            sql.contains("\\connect \"app\"\nCREATE EXTENSION IF NOT EXISTS \"vector\";"),
            "{sql}"
        );
    }
}
