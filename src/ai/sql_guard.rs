//! The static layer of natural-language queries: the model's SQL must be exactly one read-only
//! SELECT over the tenant's declared views, calling allow-listed functions only, within bounds
//! that keep one query from exhausting the server. The database layer (a login that can read
//! only the views, scoped to the tenant by the connection it runs on) holds without this check;
//! this check keeps hostile SQL from ever reaching it.
//!
//! Default-deny: relations are approved by a walk that knows every place a relation may stand in
//! a plain SELECT (FROM items, joins, subqueries in expressions) and tracks which CTE names are
//! in scope where. Every relation and FROM item the parser produced must have been approved by
//! that walk; anything reached some other way is refused.

use sqlparser::ast::{
    BinaryOperator, Expr, JoinConstraint, JoinOperator, ObjectName, Query, Select, SetExpr,
    Statement, TableFactor, TableWithJoins, ValueWithSpan, Visit, Visitor,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use std::collections::HashSet;
use std::ops::ControlFlow;

/// Functions a query may call: aggregates, and pure scalar functions without side effects.
const FUNCTIONS: &[&str] = &[
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "string_agg",
    "array_agg",
    "bool_and",
    "bool_or",
    "lower",
    "upper",
    "length",
    "char_length",
    "trim",
    "btrim",
    "ltrim",
    "rtrim",
    "left",
    "right",
    "replace",
    "split_part",
    "concat",
    "concat_ws",
    "strpos",
    "coalesce",
    "nullif",
    "greatest",
    "least",
    "abs",
    "round",
    "floor",
    "ceil",
    "date_trunc",
    "date_part",
    "to_char",
    "now",
    "current_date",
    "age",
    "extract",
];

/// Functions whose result can be much longer than their arguments. One may not appear inside
/// another's arguments: nested, they grow exponentially (nested `replace()` built 100 MB in a
/// second); alone, growth is bounded by the literal and row limits.
const AMPLIFIERS: &[&str] = &["replace", "concat", "concat_ws", "string_agg", "array_agg"];

/// Longest SQL text accepted.
pub const MAX_SQL_BYTES: usize = 8000;
/// Deepest expression nesting (subqueries in expressions included).
pub const MAX_DEPTH: usize = 16;
/// Most expression nodes in one statement.
pub const MAX_EXPRESSIONS: usize = 400;
/// Longest literal (a replacement string is a multiplier).
pub const MAX_LITERAL_CHARS: usize = 256;
/// Most relations (views and CTE references) in one statement: every one is a join factor.
pub const MAX_RELATIONS: usize = 6;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    #[error("the SQL does not parse: {0}")]
    Parse(String),
    #[error("exactly one statement is allowed, {0} given")]
    StatementCount(usize),
    #[error("only SELECT queries are allowed")]
    NotSelect,
    #[error("SELECT INTO and row locks (FOR UPDATE/SHARE) are not allowed")]
    Writes,
    #[error("`{0}` is not one of the tenant's data views")]
    Relation(String),
    #[error("the function `{0}` is not allowed")]
    Function(String),
    #[error("{0} is not allowed")]
    Construct(&'static str),
    #[error("the query is too large: {0}")]
    TooLarge(&'static str),
    #[error("`{0}` may not be used inside another string- or array-building expression")]
    Amplifier(String),
}

/// Checks `sql` against the tenant's declared views (names in schema `ai_views`).
pub fn check(sql: &str, views: &[String]) -> Result<(), Refusal> {
    if sql.len() > MAX_SQL_BYTES {
        return Err(Refusal::TooLarge("more than 8000 bytes of SQL"));
    }
    let statements =
        Parser::parse_sql(&PostgreSqlDialect {}, sql).map_err(|e| Refusal::Parse(e.to_string()))?;
    if statements.len() != 1 {
        return Err(Refusal::StatementCount(statements.len()));
    }
    let Statement::Query(query) = &statements[0] else {
        return Err(Refusal::NotSelect);
    };
    let mut census = Census::default();
    if let ControlFlow::Break(refusal) = statements[0].visit(&mut census) {
        return Err(refusal);
    }
    let mut walker = Walker {
        views: views.iter().map(|v| v.to_lowercase()).collect(),
        relations: HashSet::new(),
        factors: HashSet::new(),
    };
    walker.query(query, &Scope::default())?;
    if walker.relations != census.relations || walker.factors != census.factors {
        return Err(Refusal::Construct(
            "a relation outside a plain FROM item or subquery",
        ));
    }
    if census.relations.len() > MAX_RELATIONS {
        return Err(Refusal::TooLarge("more than 6 relations"));
    }
    Ok(())
}

/// Identifier parts as Postgres sees them: unquoted names fold to lower case.
fn parts(name: &ObjectName) -> Vec<String> {
    name.0
        .iter()
        .map(|part| match part.as_ident() {
            Some(ident) if ident.quote_style.is_none() => ident.value.to_lowercase(),
            Some(ident) => ident.value.clone(),
            None => String::from("<function>"),
        })
        .collect()
}

fn folded(ident: &sqlparser::ast::Ident) -> String {
    if ident.quote_style.is_none() {
        ident.value.to_lowercase()
    } else {
        ident.value.clone()
    }
}

fn address<T>(node: &T) -> usize {
    std::ptr::from_ref(node) as usize
}

/// The CTE names visible at a point of the query, innermost last.
#[derive(Clone, Default)]
struct Scope {
    ctes: Vec<String>,
}

impl Scope {
    fn with(&self, name: String) -> Self {
        let mut next = self.clone();
        next.ctes.push(name);
        next
    }
}

/// Approves relations by walking the query's structure with CTE scopes.
struct Walker {
    views: HashSet<String>,
    /// Addresses of the relation names and FROM items approved.
    relations: HashSet<usize>,
    factors: HashSet<usize>,
}

impl Walker {
    fn query(&mut self, query: &Query, outer: &Scope) -> Result<(), Refusal> {
        if !query.locks.is_empty() || query.for_clause.is_some() {
            return Err(Refusal::Writes);
        }
        if query.settings.is_some()
            || query.format_clause.is_some()
            || !query.pipe_operators.is_empty()
        {
            return Err(Refusal::Construct("this query clause"));
        }
        let mut scope = outer.clone();
        if let Some(with) = &query.with {
            if with.recursive {
                return Err(Refusal::Construct("WITH RECURSIVE"));
            }
            // A CTE sees the ones declared before it, not itself or later ones.
            for cte in &with.cte_tables {
                if cte.from.is_some() {
                    return Err(Refusal::Construct("this CTE form"));
                }
                self.query(&cte.query, &scope)?;
                scope = scope.with(folded(&cte.alias.name));
            }
        }
        self.set_expr(&query.body, &scope)?;
        self.subqueries_in(&query.order_by, &scope)?;
        self.subqueries_in(&query.limit_clause, &scope)?;
        self.subqueries_in(&query.fetch, &scope)
    }

    fn set_expr(&mut self, body: &SetExpr, scope: &Scope) -> Result<(), Refusal> {
        match body {
            SetExpr::Select(select) => self.select(select, scope),
            SetExpr::Query(query) => self.query(query, scope),
            SetExpr::SetOperation { left, right, .. } => {
                self.set_expr(left, scope)?;
                self.set_expr(right, scope)
            }
            SetExpr::Values(values) => self.subqueries_in(values, scope),
            SetExpr::Table(_) => Err(Refusal::Construct("the TABLE form")),
            SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => {
                Err(Refusal::NotSelect)
            }
        }
    }

    fn select(&mut self, select: &Select, scope: &Scope) -> Result<(), Refusal> {
        if select.into.is_some() {
            return Err(Refusal::Writes);
        }
        if select.top.is_some()
            || !select.lateral_views.is_empty()
            || select.prewhere.is_some()
            || !select.connect_by.is_empty()
            || select.qualify.is_some()
            || select.value_table_mode.is_some()
        {
            return Err(Refusal::Construct("this SELECT clause"));
        }
        for item in &select.from {
            self.table_with_joins(item, scope)?;
        }
        // Expressions anywhere in the SELECT (projection, WHERE, GROUP BY, HAVING, join
        // conditions); subqueries inside FROM items were walked above.
        self.subqueries_in(select, scope)
    }

    fn table_with_joins(&mut self, item: &TableWithJoins, scope: &Scope) -> Result<(), Refusal> {
        self.factor(&item.relation, scope)?;
        for join in &item.joins {
            let constraint = match &join.join_operator {
                JoinOperator::Join(c)
                | JoinOperator::Inner(c)
                | JoinOperator::Left(c)
                | JoinOperator::LeftOuter(c)
                | JoinOperator::Right(c)
                | JoinOperator::RightOuter(c)
                | JoinOperator::FullOuter(c)
                | JoinOperator::CrossJoin(c) => c,
                _ => return Err(Refusal::Construct("this join form")),
            };
            self.factor(&join.relation, scope)?;
            if let JoinConstraint::On(condition) = constraint {
                self.subqueries_in(condition, scope)?;
            }
        }
        Ok(())
    }

    fn factor(&mut self, factor: &TableFactor, scope: &Scope) -> Result<(), Refusal> {
        match factor {
            TableFactor::Table {
                name,
                args: None,
                with_hints,
                version: None,
                with_ordinality: false,
                partitions,
                json_path: None,
                sample: None,
                index_directives,
                inheritance: None,
                ..
            } if with_hints.is_empty() && partitions.is_empty() && index_directives.is_empty() => {
                self.relation(name, scope)?;
                self.factors.insert(address(factor));
                Ok(())
            }
            TableFactor::Table { args: Some(_), .. } => {
                Err(Refusal::Construct("a function in FROM"))
            }
            TableFactor::Derived {
                subquery,
                sample: None,
                ..
            } => {
                self.factors.insert(address(factor));
                self.query(subquery, scope)
            }
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => {
                self.factors.insert(address(factor));
                self.table_with_joins(table_with_joins, scope)
            }
            TableFactor::Function { .. }
            | TableFactor::TableFunction { .. }
            | TableFactor::UNNEST { .. } => Err(Refusal::Construct("a function in FROM")),
            _ => Err(Refusal::Construct("this FROM item")),
        }
    }

    fn relation(&mut self, name: &ObjectName, scope: &Scope) -> Result<(), Refusal> {
        let parts = parts(name);
        let allowed = match parts.as_slice() {
            [only] => scope.ctes.contains(only) || self.views.contains(only),
            [schema, view] => schema == "ai_views" && self.views.contains(view),
            _ => false,
        };
        if !allowed {
            return Err(Refusal::Relation(parts.join(".")));
        }
        self.relations.insert(address(name));
        Ok(())
    }

    /// Walks every subquery of `node` that is not inside a FROM item, in `scope`.
    fn subqueries_in<V: Visit>(&mut self, node: &V, scope: &Scope) -> Result<(), Refusal> {
        let mut finder = SubqueryFinder {
            walker: self,
            scope,
            query_depth: 0,
            factor_depth: 0,
        };
        match node.visit(&mut finder) {
            ControlFlow::Break(refusal) => Err(refusal),
            ControlFlow::Continue(()) => Ok(()),
        }
    }
}

/// Finds the outermost subqueries of a node (those in FROM items are the walker's own).
struct SubqueryFinder<'a> {
    walker: &'a mut Walker,
    scope: &'a Scope,
    query_depth: usize,
    factor_depth: usize,
}

impl Visitor for SubqueryFinder<'_> {
    type Break = Refusal;

    fn pre_visit_table_factor(&mut self, _: &TableFactor) -> ControlFlow<Refusal> {
        self.factor_depth += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_table_factor(&mut self, _: &TableFactor) -> ControlFlow<Refusal> {
        self.factor_depth -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<Refusal> {
        if self.query_depth == 0
            && self.factor_depth == 0
            && let Err(refusal) = self.walker.query(query, self.scope)
        {
            return ControlFlow::Break(refusal);
        }
        self.query_depth += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _: &Query) -> ControlFlow<Refusal> {
        self.query_depth -= 1;
        ControlFlow::Continue(())
    }
}

/// Everything the parser produced: every relation and FROM item (for the walker to account
/// for), and the expression rules, which do not depend on scope.
#[derive(Default)]
struct Census {
    relations: HashSet<usize>,
    factors: HashSet<usize>,
    depth: usize,
    expressions: usize,
    /// Amplifying expressions currently open around the node being visited.
    amplifiers: Vec<Amplifier>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Amplifier {
    Function,
    Concat,
}

fn amplifier(expr: &Expr) -> Option<Amplifier> {
    match expr {
        Expr::BinaryOp {
            op: BinaryOperator::StringConcat,
            ..
        } => Some(Amplifier::Concat),
        Expr::Function(function) => {
            let name = parts(&function.name);
            matches!(name.as_slice(), [only] if AMPLIFIERS.contains(&only.as_str()))
                .then_some(Amplifier::Function)
        }
        _ => None,
    }
}

impl Visitor for Census {
    type Break = Refusal;

    // Nested statements too: `WITH x AS (DELETE ...)` arrives here as a DELETE.
    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<Refusal> {
        match statement {
            Statement::Query(_) => ControlFlow::Continue(()),
            _ => ControlFlow::Break(Refusal::NotSelect),
        }
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<Refusal> {
        self.relations.insert(address(relation));
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<Refusal> {
        self.factors.insert(address(factor));
        ControlFlow::Continue(())
    }

    fn pre_visit_value(&mut self, value: &ValueWithSpan) -> ControlFlow<Refusal> {
        if value.value.to_string().chars().count() > MAX_LITERAL_CHARS + 2 {
            return ControlFlow::Break(Refusal::TooLarge("a literal longer than 256 characters"));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<Refusal> {
        self.depth += 1;
        self.expressions += 1;
        if self.depth > MAX_DEPTH {
            return ControlFlow::Break(Refusal::TooLarge("expressions nested more than 16 deep"));
        }
        if self.expressions > MAX_EXPRESSIONS {
            return ControlFlow::Break(Refusal::TooLarge("more than 400 expressions"));
        }
        if let Expr::Function(function) = expr {
            let name = parts(&function.name);
            let allowed = matches!(name.as_slice(), [only] if FUNCTIONS.contains(&only.as_str()));
            if !allowed {
                return ControlFlow::Break(Refusal::Function(name.join(".")));
            }
        }
        if let Some(kind) = amplifier(expr) {
            // `a || b || c` is one linear chain, not a nesting.
            let nested = self
                .amplifiers
                .iter()
                .any(|outer| !(*outer == Amplifier::Concat && kind == Amplifier::Concat));
            if nested {
                return ControlFlow::Break(Refusal::Amplifier(amplifier_name(expr)));
            }
            self.amplifiers.push(kind);
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &Expr) -> ControlFlow<Refusal> {
        self.depth -= 1;
        if amplifier(expr).is_some() {
            self.amplifiers.pop();
        }
        ControlFlow::Continue(())
    }
}

fn amplifier_name(expr: &Expr) -> String {
    match expr {
        Expr::Function(function) => parts(&function.name).join("."),
        _ => "||".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn views() -> Vec<String> {
        vec!["inbound_messages".into(), "outbound_messages".into()]
    }

    fn refused(sql: &str) -> Refusal {
        check(sql, &views()).expect_err(sql)
    }

    #[test]
    fn plain_selects_over_declared_views_pass() {
        for sql in [
            "SELECT count(*) FROM inbound_messages",
            "SELECT contact, count(*) FROM ai_views.inbound_messages GROUP BY contact ORDER BY 2 DESC",
            "WITH recent AS (SELECT * FROM outbound_messages WHERE sent_at > now() - interval '7 days') SELECT count(*) FROM recent",
            "SELECT i.contact FROM inbound_messages i JOIN outbound_messages o ON o.contact = i.contact",
            "SELECT date_trunc('day', received_at) d, count(*) FROM Inbound_Messages GROUP BY 1",
            "SELECT contact FROM inbound_messages WHERE contact IN (SELECT contact FROM outbound_messages)",
            "SELECT (SELECT count(*) FROM outbound_messages o WHERE o.contact = i.contact) FROM inbound_messages i",
            "SELECT * FROM (SELECT contact FROM inbound_messages) q, LATERAL (SELECT count(*) FROM outbound_messages o WHERE o.contact = q.contact) c",
            "WITH a AS (SELECT contact FROM inbound_messages), b AS (SELECT * FROM a) SELECT * FROM b",
            "SELECT contact FROM inbound_messages UNION SELECT contact FROM outbound_messages ORDER BY 1 LIMIT 5",
            "SELECT first || ' ' || last FROM (SELECT contact AS first, message AS last FROM inbound_messages) q",
            "SELECT string_agg(contact, ', ') FROM inbound_messages",
            "SELECT replace(message, 'a', 'b') FROM inbound_messages",
            "SELECT i.contact FROM (inbound_messages i JOIN outbound_messages o ON o.contact = i.contact)",
            "SELECT * FROM (VALUES (1), (2)) v(n)",
        ] {
            assert_eq!(check(sql, &views()), Ok(()), "{sql}");
        }
    }

    #[test]
    fn statements_other_than_one_select_are_refused() {
        assert_eq!(refused("DROP TABLE jobs"), Refusal::NotSelect);
        assert_eq!(refused("DELETE FROM jobs"), Refusal::NotSelect);
        assert_eq!(
            refused("UPDATE jobs SET status = 'dead'"),
            Refusal::NotSelect
        );
        assert_eq!(
            refused("SELECT 1; DROP TABLE jobs"),
            Refusal::StatementCount(2)
        );
        assert_eq!(
            refused("WITH x AS (DELETE FROM jobs RETURNING *) SELECT * FROM x"),
            Refusal::NotSelect
        );
        assert_eq!(
            refused("SELECT * FROM inbound_messages FOR UPDATE"),
            Refusal::Writes
        );
        assert_eq!(
            refused("SELECT * INTO stolen FROM inbound_messages"),
            Refusal::Writes
        );
        assert!(matches!(refused("SELEC nonsense"), Refusal::Parse(_)));
    }

    #[test]
    fn relations_outside_the_declared_views_are_refused() {
        assert_eq!(
            refused("SELECT * FROM pg_catalog.pg_class"),
            Refusal::Relation("pg_catalog.pg_class".into())
        );
        assert_eq!(
            refused("SELECT * FROM information_schema.tables"),
            Refusal::Relation("information_schema.tables".into())
        );
        assert_eq!(
            refused("SELECT * FROM jobs"),
            Refusal::Relation("jobs".into())
        );
        assert_eq!(
            refused("SELECT * FROM public.kb_chunks"),
            Refusal::Relation("public.kb_chunks".into())
        );
        assert_eq!(
            refused("SELECT * FROM (SELECT * FROM ai_views.knowledge_documents) q"),
            Refusal::Relation("ai_views.knowledge_documents".into())
        );
        assert_eq!(
            refused("SELECT (SELECT count(*) FROM pg_stat_activity) FROM inbound_messages"),
            Refusal::Relation("pg_stat_activity".into())
        );
    }

    #[test]
    fn functions_in_from_and_the_table_form_are_refused() {
        // The review's bypasses: table functions in FROM (plain, LATERAL, and named like a CTE
        // in scope), and `TABLE x`.
        assert!(matches!(
            refused("SELECT * FROM inbound_messages, LATERAL set_config('role', 'none', true)"),
            Refusal::Construct(_)
        ));
        assert!(matches!(
            refused("SELECT * FROM pg_sleep(10)"),
            Refusal::Construct(_)
        ));
        assert!(matches!(
            refused(
                "WITH set_config AS (SELECT 1) SELECT * FROM set_config('app.tenant_id', 'x', true)"
            ),
            Refusal::Construct(_)
        ));
        assert!(matches!(
            refused("SELECT * FROM ROWS FROM (generate_series(1, 10))"),
            Refusal::Construct(_) | Refusal::Parse(_)
        ));
        assert!(matches!(
            refused("SELECT * FROM unnest(ARRAY[1, 2])"),
            Refusal::Construct(_)
        ));
        // The parser knows `TABLE x` only inside a query; alone it does not parse.
        assert!(matches!(
            refused("TABLE jobs"),
            Refusal::Construct(_) | Refusal::Parse(_)
        ));
        assert_eq!(
            refused("SELECT * FROM inbound_messages UNION TABLE jobs"),
            Refusal::Construct("the TABLE form")
        );
        assert_eq!(
            refused("SELECT count(*) FROM inbound_messages, pg_sleep(30)"),
            Refusal::Construct("a function in FROM")
        );
    }

    #[test]
    fn cte_names_are_allowed_only_where_they_are_in_scope() {
        // An earlier CTE cannot see a later one: Postgres resolves this name to the catalog.
        assert_eq!(
            refused(
                "WITH a AS (SELECT * FROM pg_stat_activity), pg_stat_activity AS (SELECT 1) SELECT * FROM a"
            ),
            Refusal::Relation("pg_stat_activity".into())
        );
        // A CTE declared inside a subquery is not visible outside it.
        assert_eq!(
            refused(
                "SELECT * FROM (WITH pg_roles AS (SELECT 1) SELECT * FROM pg_roles) q, pg_roles"
            ),
            Refusal::Relation("pg_roles".into())
        );
        assert_eq!(
            refused(
                "SELECT (WITH pg_authid AS (SELECT 1) SELECT 1), (SELECT count(*) FROM pg_authid) FROM inbound_messages"
            ),
            Refusal::Relation("pg_authid".into())
        );
        // A CTE does not see itself without RECURSIVE, and RECURSIVE is refused.
        assert_eq!(
            refused("WITH pg_shadow AS (SELECT * FROM pg_shadow) SELECT * FROM pg_shadow"),
            Refusal::Relation("pg_shadow".into())
        );
        assert_eq!(
            refused("WITH RECURSIVE r AS (SELECT 1 UNION ALL SELECT 1 FROM r) SELECT * FROM r"),
            Refusal::Construct("WITH RECURSIVE")
        );
        // A CTE name is not a schema-qualified relation.
        assert_eq!(
            refused("WITH x AS (SELECT 1) SELECT * FROM pg_catalog.x"),
            Refusal::Relation("pg_catalog.x".into())
        );
    }

    #[test]
    fn functions_outside_the_allow_list_are_refused() {
        assert_eq!(
            refused("SELECT pg_sleep(10)"),
            Refusal::Function("pg_sleep".into())
        );
        assert_eq!(
            refused("SELECT set_config('app.tenant_id', 'x', false)"),
            Refusal::Function("set_config".into())
        );
        assert_eq!(
            refused("SELECT set_config('role', 'none', true) FROM inbound_messages"),
            Refusal::Function("set_config".into())
        );
        assert_eq!(
            refused("SELECT pg_advisory_lock(1)"),
            Refusal::Function("pg_advisory_lock".into())
        );
        assert_eq!(
            refused("SELECT pg_catalog.count(*) FROM inbound_messages"),
            Refusal::Function("pg_catalog.count".into())
        );
        assert_eq!(
            refused("SELECT pg_read_file('/etc/passwd')"),
            Refusal::Function("pg_read_file".into())
        );
    }

    #[test]
    fn growth_and_size_are_bounded() {
        assert_eq!(
            refused(
                "SELECT replace(replace(message, 'a', 'aaaaaaaaaa'), 'a', 'aaaaaaaaaa') FROM inbound_messages"
            ),
            Refusal::Amplifier("replace".into())
        );
        assert_eq!(
            refused("SELECT concat(string_agg(message, ''), 'x') FROM inbound_messages"),
            Refusal::Amplifier("string_agg".into())
        );
        assert_eq!(
            refused("SELECT replace(message || message, 'a', 'bb') FROM inbound_messages"),
            Refusal::Amplifier("||".into())
        );
        assert_eq!(
            refused(
                "SELECT replace((SELECT string_agg(message, '') FROM inbound_messages), 'a', 'bb')"
            ),
            Refusal::Amplifier("string_agg".into())
        );
        let long = "x".repeat(300);
        assert!(matches!(
            refused(&format!(
                "SELECT replace(message, 'a', '{long}') FROM inbound_messages"
            )),
            Refusal::TooLarge(_)
        ));
        let deep = format!(
            "SELECT {}1{} FROM inbound_messages",
            "(".repeat(40),
            ")".repeat(40)
        );
        assert!(matches!(
            refused(&deep),
            Refusal::TooLarge(_) | Refusal::Parse(_)
        ));
        let wide = format!(
            "SELECT count(*) FROM {}",
            ["inbound_messages"; 7].join(", ")
        );
        assert!(matches!(refused(&wide), Refusal::TooLarge(_)));
        assert!(matches!(
            refused(&"SELECT 1 ".repeat(1000)),
            Refusal::TooLarge(_)
        ));
    }
}
