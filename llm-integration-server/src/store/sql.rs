//! The control plane's SQL, compiled once per driver.
//!
//! The backend module that includes this file (`#[path = "sql.rs"] mod
//! sql;`) supplies `Db` (the sqlx driver), `Store` (its store type, with a
//! `pool` field and `begin()`), and the hooks where the two databases
//! differ: `commit` (which bumps the configuration version and, on
//! PostgreSQL, notifies the other replicas). Everything else here is
//! portable SQL: `$N` placeholders, `RETURNING`, `ON CONFLICT`, integer
//! sums cast to `BIGINT`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::str::FromStr;
use std::time::SystemTime;

use async_trait::async_trait;
use llm_integration_core::seams::{
    Account, AllocationLease, ChatGptAccountRecord, ConfigStore, ControlStore, LeaseRequest,
    NewCredential, SealedSecret, SshKeyRecord, StoreError, StoreLock, TokenUsage, UsageGrouping,
    UsageRecord, UsageRow, WebTokenKind,
};
use llm_integration_core::SourceKind;
use llm_integration_core::{
    AccountName, ConfigRecords, CredentialId, IntegrationConfig, IntegrationId, IntegrationKind,
    LlmSettings, Owner, Provider, ReflectionSettings, Source, Team, TeamId, TeamName, User, UserId,
    Vm, VmId,
};
use sqlx::{Row, Transaction};

use super::{commit, hold_lock, insert_usage, Db, Store};
use crate::store::{conflict, corrupt, owner_parts, unavailable, unix_ms};

fn settings_json(kind: &IntegrationKind) -> Result<(&'static str, String), StoreError> {
    let encoded = match kind {
        IntegrationKind::Llm(s) => serde_json::to_string(s),
        IntegrationKind::Reflection(s) => serde_json::to_string(s),
    };
    encoded
        .map(|json| (kind.type_name(), json))
        .map_err(|e| corrupt("settings", e))
}

/// Stores `keys` for integration `id` and points `kind`'s sources at them.
async fn store_keys(
    tx: &mut Transaction<'_, Db>,
    id: i64,
    kind: &mut IntegrationKind,
    keys: Vec<NewCredential>,
) -> Result<(), StoreError> {
    if keys.is_empty() {
        return Ok(());
    }
    let IntegrationKind::Llm(settings) = kind else {
        return Err(StoreError::Corrupt(
            "keys given for a non-llm integration".into(),
        ));
    };
    for key in keys {
        let row = sqlx::query(
            "INSERT INTO credentials (integration_id, provider, nonce, ciphertext, last4) VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(id)
        .bind(key.provider.as_str())
        .bind(&key.sealed.nonce)
        .bind(&key.sealed.ciphertext)
        .bind(key.hint.last4())
        .fetch_one(&mut **tx)
        .await
        .map_err(unavailable)?;
        let credential = CredentialId(row.try_get(0).map_err(unavailable)?);
        match settings.source_mut(key.provider) {
            Source::Custom { auth, .. } => auth.set_credential(credential, key.hint),
            source => {
                *source = Source::Byok {
                    credential,
                    hint: key.hint,
                }
            }
        }
    }
    Ok(())
}

/// Deletes the keys of integration `id` that `kind` no longer references.
async fn prune_keys(
    tx: &mut Transaction<'_, Db>,
    id: i64,
    kind: &IntegrationKind,
) -> Result<(), StoreError> {
    let kept: Vec<i64> = match kind {
        IntegrationKind::Llm(s) => Provider::ALL
            .iter()
            .filter_map(|p| match s.source(*p) {
                Source::Byok { credential, .. } => Some(credential.0),
                Source::Custom { auth, .. } => auth.credential().map(|c| c.0),
                _ => None,
            })
            .collect(),
        IntegrationKind::Reflection(_) => Vec::new(),
    };
    let rows = sqlx::query("SELECT id FROM credentials WHERE integration_id = $1")
        .bind(id)
        .fetch_all(&mut **tx)
        .await
        .map_err(unavailable)?;
    for row in rows {
        let cid: i64 = row.try_get(0).map_err(unavailable)?;
        if !kept.contains(&cid) {
            sqlx::query("DELETE FROM credentials WHERE id = $1")
                .bind(cid)
                .execute(&mut **tx)
                .await
                .map_err(unavailable)?;
        }
    }
    Ok(())
}

async fn write_attachments(
    tx: &mut Transaction<'_, Db>,
    id: i64,
    integration: &IntegrationConfig,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM attachments WHERE integration_id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await
        .map_err(unavailable)?;
    for (position, spec) in integration.attachments.iter().enumerate() {
        sqlx::query("INSERT INTO attachments (integration_id, position, spec) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(position as i64)
            .bind(spec.to_string())
            .execute(&mut **tx)
            .await
            .map_err(conflict("the integration is already attached there"))?;
    }
    Ok(())
}

async fn write_vm_details(
    tx: &mut Transaction<'_, Db>,
    vm: &Vm,
    id: i64,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM vm_tags WHERE vm_id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await
        .map_err(unavailable)?;
    for tag in &vm.tags {
        sqlx::query("INSERT INTO vm_tags (vm_id, tag) VALUES ($1, $2)")
            .bind(id)
            .bind(tag.as_str())
            .execute(&mut **tx)
            .await
            .map_err(unavailable)?;
    }
    sqlx::query("DELETE FROM vm_addresses WHERE vm_id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await
        .map_err(unavailable)?;
    for address in &vm.addresses {
        sqlx::query("INSERT INTO vm_addresses (address, vm_id) VALUES ($1, $2)")
            .bind(address.to_string())
            .bind(id)
            .execute(&mut **tx)
            .await
            .map_err(conflict("that address already belongs to another VM"))?;
    }
    Ok(())
}

/// Locks `owner`'s allocation row for the transaction (creating it with
/// `default` if never set) and returns its unleased balance. Every change
/// to an owner's balance or leases takes this lock first, so they
/// serialise per owner on both databases (PostgreSQL locks the row;
/// SQLite's first write takes the database's write lock).
async fn lock_allocation(
    tx: &mut Transaction<'_, Db>,
    owner: Owner,
    default: i64,
) -> Result<i64, StoreError> {
    let (kind, id) = owner_parts(owner);
    sqlx::query_scalar(
        "INSERT INTO allocations (owner_kind, owner_id, balance_micros) VALUES ($1, $2, $3) \
         ON CONFLICT (owner_kind, owner_id) DO UPDATE SET balance_micros = allocations.balance_micros \
         RETURNING balance_micros",
    )
    .bind(kind)
    .bind(id)
    .bind(default)
    .fetch_one(&mut **tx)
    .await
    .map_err(unavailable)
}

/// An owner's whole balance: unleased plus what the servers' leases hold.
const OWNER_BALANCE: &str =
    "SELECT balance_micros + (SELECT CAST(COALESCE(SUM(micros), 0) AS BIGINT) \
     FROM allocation_leases l WHERE l.owner_kind = a.owner_kind AND l.owner_id = a.owner_id) \
     FROM allocations a WHERE owner_kind = $1 AND owner_id = $2";

/// Adds `micros` (negative to debit) to an owner's unleased balance.
async fn add_to_balance(
    tx: &mut Transaction<'_, Db>,
    kind: &str,
    id: i64,
    micros: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE allocations SET balance_micros = balance_micros + $3 WHERE owner_kind = $1 AND owner_id = $2",
    )
    .bind(kind)
    .bind(id)
    .bind(micros)
    .execute(&mut **tx)
    .await
    .map_err(unavailable)?;
    Ok(())
}

/// The owner a stored `(owner_kind, owner_id)` names.
fn owner_from(kind: &str, id: i64) -> Result<Owner, StoreError> {
    match kind {
        "user" => Ok(Owner::User(UserId(id))),
        "team" => Ok(Owner::Team(TeamId(id))),
        other => Err(corrupt("owner kind", other)),
    }
}

fn parse<T: FromStr>(what: &str, value: &str) -> Result<T, StoreError>
where
    T::Err: std::fmt::Display,
{
    value.parse().map_err(|e| corrupt(what, e))
}

#[async_trait]
impl ConfigStore for Store {
    async fn load(&self) -> Result<ConfigRecords, StoreError> {
        let mut tx = self.begin().await?;
        let users = sqlx::query("SELECT id, email FROM users ORDER BY id")
            .fetch_all(&mut *tx)
            .await
            .map_err(unavailable)?
            .into_iter()
            .map(|r| Ok(User::new(UserId(r.try_get(0)?), r.try_get::<String, _>(1)?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(unavailable)?;

        let mut members: HashMap<i64, BTreeSet<UserId>> = HashMap::new();
        for r in sqlx::query("SELECT team_id, user_id FROM team_members")
            .fetch_all(&mut *tx)
            .await
            .map_err(unavailable)?
        {
            members
                .entry(r.try_get(0).map_err(unavailable)?)
                .or_default()
                .insert(UserId(r.try_get(1).map_err(unavailable)?));
        }
        let mut teams = Vec::new();
        for r in sqlx::query("SELECT id, name FROM teams ORDER BY id")
            .fetch_all(&mut *tx)
            .await
            .map_err(unavailable)?
        {
            let id: i64 = r.try_get(0).map_err(unavailable)?;
            let name: String = r.try_get(1).map_err(unavailable)?;
            teams.push(Team {
                id: TeamId(id),
                name: parse("team name", &name)?,
                members: members.remove(&id).unwrap_or_default(),
            });
        }

        let mut tags: HashMap<i64, Vec<String>> = HashMap::new();
        for r in sqlx::query("SELECT vm_id, tag FROM vm_tags")
            .fetch_all(&mut *tx)
            .await
            .map_err(unavailable)?
        {
            tags.entry(r.try_get(0).map_err(unavailable)?)
                .or_default()
                .push(r.try_get(1).map_err(unavailable)?);
        }
        let mut addresses: HashMap<i64, Vec<String>> = HashMap::new();
        for r in sqlx::query("SELECT vm_id, address FROM vm_addresses ORDER BY address")
            .fetch_all(&mut *tx)
            .await
            .map_err(unavailable)?
        {
            addresses
                .entry(r.try_get(0).map_err(unavailable)?)
                .or_default()
                .push(r.try_get(1).map_err(unavailable)?);
        }
        let mut vms = Vec::new();
        for r in sqlx::query(
            "SELECT id, name, owner_id, team_id, comment, default_port FROM vms ORDER BY id",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(unavailable)?
        {
            let id: i64 = r.try_get(0).map_err(unavailable)?;
            let name: String = r.try_get(1).map_err(unavailable)?;
            let mut vm = Vm::new(
                VmId(id),
                parse("VM name", &name)?,
                UserId(r.try_get(2).map_err(unavailable)?),
            );
            vm.team = r
                .try_get::<Option<i64>, _>(3)
                .map_err(unavailable)?
                .map(TeamId);
            vm.comment = r.try_get(4).map_err(unavailable)?;
            let port: Option<i64> = r.try_get(5).map_err(unavailable)?;
            vm.default_port = port.and_then(|p| u16::try_from(p).ok());
            for t in tags.remove(&id).unwrap_or_default() {
                vm.tags.insert(parse("tag", &t)?);
            }
            for a in addresses.remove(&id).unwrap_or_default() {
                vm.addresses.push(parse("VM address", &a)?);
            }
            vms.push(vm);
        }

        let mut attachments: HashMap<i64, Vec<String>> = HashMap::new();
        for r in sqlx::query(
            "SELECT integration_id, spec FROM attachments ORDER BY integration_id, position",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(unavailable)?
        {
            attachments
                .entry(r.try_get(0).map_err(unavailable)?)
                .or_default()
                .push(r.try_get(1).map_err(unavailable)?);
        }
        let mut integrations = Vec::new();
        for r in sqlx::query("SELECT id, owner_kind, owner_id, name, kind, settings, comment FROM integrations ORDER BY id")
            .fetch_all(&mut *tx)
            .await
            .map_err(unavailable)?
        {
            let id: i64 = r.try_get(0).map_err(unavailable)?;
            let owner_kind: String = r.try_get(1).map_err(unavailable)?;
            let owner_id: i64 = r.try_get(2).map_err(unavailable)?;
            let owner = owner_from(&owner_kind, owner_id)?;
            let name: String = r.try_get(3).map_err(unavailable)?;
            let kind_text: String = r.try_get(4).map_err(unavailable)?;
            let settings: String = r.try_get(5).map_err(unavailable)?;
            let kind = match kind_text.as_str() {
                "llm" => IntegrationKind::Llm(serde_json::from_str::<LlmSettings>(&settings).map_err(|e| corrupt("llm settings", e))?),
                "reflection" => IntegrationKind::Reflection(
                    serde_json::from_str::<ReflectionSettings>(&settings).map_err(|e| corrupt("reflection settings", e))?,
                ),
                other => return Err(corrupt("integration type", other)),
            };
            let specs = attachments
                .remove(&id)
                .unwrap_or_default()
                .iter()
                .map(|s| parse("attachment", s))
                .collect::<Result<Vec<_>, _>>()?;
            integrations.push(IntegrationConfig {
                id: IntegrationId(id),
                owner,
                name: parse("integration name", &name)?,
                comment: r.try_get(6).map_err(unavailable)?,
                kind,
                attachments: specs,
            });
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(ConfigRecords {
            users,
            teams,
            vms,
            integrations,
        })
    }

    async fn version(&self) -> Result<u64, StoreError> {
        let v: i64 = sqlx::query_scalar("SELECT version FROM config_version WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(v as u64)
    }
}

#[async_trait]
impl ControlStore for Store {
    async fn create_user(&self, email: &str, operator: bool) -> Result<UserId, StoreError> {
        let mut tx = self.begin().await?;
        let id: i64 =
            sqlx::query_scalar("INSERT INTO users (email, operator) VALUES ($1, $2) RETURNING id")
                .bind(email)
                .bind(operator)
                .fetch_one(&mut *tx)
                .await
                .map_err(conflict("a user with that email already exists"))?;
        commit(self, tx).await?;
        Ok(UserId(id))
    }

    async fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        sqlx::query("SELECT id, email, operator FROM users ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?
            .into_iter()
            .map(|r| {
                Ok(Account {
                    user: User::new(UserId(r.try_get(0)?), r.try_get::<String, _>(1)?),
                    operator: r.try_get(2)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(unavailable)
    }

    async fn delete_user(&self, user: UserId) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM integrations WHERE owner_kind = 'user' AND owner_id = $1")
            .bind(user.0)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        let done = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(user.0)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("no such user".into()));
        }
        commit(self, tx).await
    }

    async fn add_token(
        &self,
        user: UserId,
        token_hash: &[u8],
        label: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO access_tokens (user_id, token_hash, label) VALUES ($1, $2, $3)")
            .bind(user.0)
            .bind(token_hash)
            .bind(label)
            .execute(&self.pool)
            .await
            .map_err(conflict("that token already exists"))?;
        Ok(())
    }

    async fn user_by_token(&self, token_hash: &[u8]) -> Result<Option<UserId>, StoreError> {
        let id: Option<i64> =
            sqlx::query_scalar("SELECT user_id FROM access_tokens WHERE token_hash = $1")
                .bind(token_hash)
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
        Ok(id.map(UserId))
    }

    async fn add_web_token(
        &self,
        kind: WebTokenKind,
        user: UserId,
        token_hash: &str,
        expires_at: SystemTime,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO web_tokens (token_hash, kind, user_id, expires_at_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(token_hash)
        .bind(kind.as_str())
        .bind(user.0)
        .bind(unix_ms(expires_at))
        .execute(&self.pool)
        .await
        .map_err(conflict("that sign-in secret already exists"))?;
        Ok(())
    }

    async fn web_token_user(
        &self,
        kind: WebTokenKind,
        token_hash: &str,
        now: SystemTime,
        consume: bool,
    ) -> Result<Option<UserId>, StoreError> {
        let now = unix_ms(now);
        sqlx::query("DELETE FROM web_tokens WHERE expires_at_ms <= $1")
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        let sql = if consume {
            "DELETE FROM web_tokens WHERE token_hash = $1 AND kind = $2 AND expires_at_ms > $3 RETURNING user_id"
        } else {
            "SELECT user_id FROM web_tokens WHERE token_hash = $1 AND kind = $2 AND expires_at_ms > $3"
        };
        let id: Option<i64> = sqlx::query_scalar(sql)
            .bind(token_hash)
            .bind(kind.as_str())
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(id.map(UserId))
    }

    async fn delete_web_token(&self, token_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM web_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn create_team(&self, name: &TeamName) -> Result<TeamId, StoreError> {
        let mut tx = self.begin().await?;
        let id: i64 = sqlx::query_scalar("INSERT INTO teams (name) VALUES ($1) RETURNING id")
            .bind(name.as_str())
            .fetch_one(&mut *tx)
            .await
            .map_err(conflict("a team with that name already exists"))?;
        commit(self, tx).await?;
        Ok(TeamId(id))
    }

    async fn delete_team(&self, team: TeamId) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM integrations WHERE owner_kind = 'team' AND owner_id = $1")
            .bind(team.0)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        let done = sqlx::query("DELETE FROM teams WHERE id = $1")
            .bind(team.0)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("no such team".into()));
        }
        commit(self, tx).await
    }

    async fn set_team_member(
        &self,
        team: TeamId,
        user: UserId,
        member: bool,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let done = if member {
            sqlx::query("INSERT INTO team_members (team_id, user_id) VALUES ($1, $2)")
                .bind(team.0)
                .bind(user.0)
                .execute(&mut *tx)
                .await
                .map_err(conflict("the user is already a member of that team"))?
        } else {
            sqlx::query("DELETE FROM team_members WHERE team_id = $1 AND user_id = $2")
                .bind(team.0)
                .bind(user.0)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?
        };
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(
                "the user is not a member of that team".into(),
            ));
        }
        commit(self, tx).await
    }

    async fn create_vm(&self, vm: &Vm) -> Result<VmId, StoreError> {
        let mut tx = self.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO vms (name, owner_id, team_id, comment, default_port) VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(vm.name.as_str())
        .bind(vm.owner.0)
        .bind(vm.team.map(|t| t.0))
        .bind(&vm.comment)
        .bind(vm.default_port.map(i64::from))
        .fetch_one(&mut *tx)
        .await
        .map_err(conflict("a VM with that name already exists"))?;
        write_vm_details(&mut tx, vm, id).await?;
        commit(self, tx).await?;
        Ok(VmId(id))
    }

    async fn update_vm(&self, vm: &Vm) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE vms SET team_id = $1, comment = $2, default_port = $3 WHERE id = $4",
        )
        .bind(vm.team.map(|t| t.0))
        .bind(&vm.comment)
        .bind(vm.default_port.map(i64::from))
        .bind(vm.id.0)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("no VM named {}", vm.name)));
        }
        write_vm_details(&mut tx, vm, vm.id.0).await?;
        commit(self, tx).await
    }

    async fn delete_vm(&self, vm: VmId) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let done = sqlx::query("DELETE FROM vms WHERE id = $1")
            .bind(vm.0)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("no such VM".into()));
        }
        commit(self, tx).await
    }

    async fn insert_integration(
        &self,
        integration: &IntegrationConfig,
        keys: Vec<NewCredential>,
    ) -> Result<IntegrationId, StoreError> {
        let mut tx = self.begin().await?;
        let (owner_kind, owner_id) = owner_parts(integration.owner);
        let mut kind = integration.kind.clone();
        let (kind_text, placeholder) = settings_json(&kind)?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO integrations (owner_kind, owner_id, name, kind, settings, comment) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(owner_kind)
        .bind(owner_id)
        .bind(integration.name.as_str())
        .bind(kind_text)
        .bind(placeholder)
        .bind(&integration.comment)
        .fetch_one(&mut *tx)
        .await
        .map_err(conflict("an integration with that name already exists"))?;
        if !keys.is_empty() {
            store_keys(&mut tx, id, &mut kind, keys).await?;
            let (_, settings) = settings_json(&kind)?;
            sqlx::query("UPDATE integrations SET settings = $1 WHERE id = $2")
                .bind(settings)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
        }
        write_attachments(&mut tx, id, integration).await?;
        commit(self, tx).await?;
        Ok(IntegrationId(id))
    }

    async fn update_integration(
        &self,
        integration: &IntegrationConfig,
        keys: Vec<NewCredential>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let id = integration.id.0;
        let mut kind = integration.kind.clone();
        store_keys(&mut tx, id, &mut kind, keys).await?;
        let (kind_text, settings) = settings_json(&kind)?;
        let done = sqlx::query(
            "UPDATE integrations SET name = $1, kind = $2, settings = $3, comment = $4, updated_at = CURRENT_TIMESTAMP WHERE id = $5",
        )
        .bind(integration.name.as_str())
        .bind(kind_text)
        .bind(settings)
        .bind(&integration.comment)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(conflict("an integration with that name already exists"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "integration {} no longer exists",
                integration.name
            )));
        }
        prune_keys(&mut tx, id, &kind).await?;
        write_attachments(&mut tx, id, integration).await?;
        commit(self, tx).await
    }

    async fn delete_integration(&self, integration: IntegrationId) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let done = sqlx::query("DELETE FROM integrations WHERE id = $1")
            .bind(integration.0)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(
                "the integration no longer exists".into(),
            ));
        }
        commit(self, tx).await
    }

    async fn sealed_credential(
        &self,
        credential: CredentialId,
    ) -> Result<Option<SealedSecret>, StoreError> {
        let row = sqlx::query("SELECT nonce, ciphertext FROM credentials WHERE id = $1")
            .bind(credential.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        row.map(|r| {
            Ok(SealedSecret {
                nonce: r.try_get(0)?,
                ciphertext: r.try_get(1)?,
            })
        })
        .transpose()
        .map_err(unavailable)
    }

    async fn chatgpt_accounts(
        &self,
        user: UserId,
    ) -> Result<Vec<(AccountName, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, status FROM chatgpt_accounts WHERE user_id = $1 ORDER BY name",
        )
        .bind(user.0)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.into_iter()
            .map(|r| {
                let name: String = r.try_get(0).map_err(unavailable)?;
                Ok((
                    parse("account name", &name)?,
                    r.try_get(1).map_err(unavailable)?,
                ))
            })
            .collect()
    }

    async fn chatgpt_account(
        &self,
        user: UserId,
        name: &AccountName,
    ) -> Result<Option<ChatGptAccountRecord>, StoreError> {
        let row = sqlx::query("SELECT nonce, ciphertext, status, email, plan FROM chatgpt_accounts WHERE user_id = $1 AND name = $2")
            .bind(user.0)
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        row.map(|r| {
            Ok(ChatGptAccountRecord {
                sealed: SealedSecret {
                    nonce: r.try_get(0)?,
                    ciphertext: r.try_get(1)?,
                },
                status: r.try_get(2)?,
                email: r.try_get(3)?,
                plan: r.try_get(4)?,
            })
        })
        .transpose()
        .map_err(unavailable)
    }

    async fn save_chatgpt_account(
        &self,
        user: UserId,
        name: &AccountName,
        account: &ChatGptAccountRecord,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO chatgpt_accounts (user_id, name, nonce, ciphertext, email, plan, status) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (user_id, name) DO UPDATE SET nonce = excluded.nonce, ciphertext = excluded.ciphertext, \
             email = COALESCE(excluded.email, chatgpt_accounts.email), plan = COALESCE(excluded.plan, chatgpt_accounts.plan), status = excluded.status",
        )
        .bind(user.0)
        .bind(name.as_str())
        .bind(&account.sealed.nonce)
        .bind(&account.sealed.ciphertext)
        .bind(account.email.as_deref())
        .bind(account.plan.as_deref())
        .bind(&account.status)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        commit(self, tx).await
    }

    async fn delete_chatgpt_account(
        &self,
        user: UserId,
        name: &AccountName,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let done = sqlx::query("DELETE FROM chatgpt_accounts WHERE user_id = $1 AND name = $2")
            .bind(user.0)
            .bind(name.as_str())
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "no ChatGPT account named {name}"
            )));
        }
        commit(self, tx).await
    }

    async fn allocation(&self, owner: Owner) -> Result<Option<i64>, StoreError> {
        let (kind, id) = owner_parts(owner);
        sqlx::query_scalar(OWNER_BALANCE)
            .bind(kind)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)
    }

    async fn set_allocation(&self, owner: Owner, micros: i64) -> Result<(), StoreError> {
        let (kind, id) = owner_parts(owner);
        let mut tx = self.begin().await?;
        lock_allocation(&mut tx, owner, 0).await?;
        // `micros` is what is left from now: the leases are revoked.
        sqlx::query("DELETE FROM allocation_leases WHERE owner_kind = $1 AND owner_id = $2")
            .bind(kind)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        sqlx::query(
            "UPDATE allocations SET balance_micros = $3 WHERE owner_kind = $1 AND owner_id = $2",
        )
        .bind(kind)
        .bind(id)
        .bind(micros)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)
    }

    async fn grant_allocation(
        &self,
        owner: Owner,
        micros: i64,
        default: i64,
    ) -> Result<i64, StoreError> {
        let (kind, id) = owner_parts(owner);
        let mut tx = self.begin().await?;
        lock_allocation(&mut tx, owner, default).await?;
        add_to_balance(&mut tx, kind, id, micros).await?;
        let total: i64 = sqlx::query_scalar(OWNER_BALANCE)
            .bind(kind)
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(total)
    }

    async fn lease_allocation(
        &self,
        owner: Owner,
        holder: &str,
        request: LeaseRequest,
        default: i64,
    ) -> Result<AllocationLease, StoreError> {
        let (kind, id) = owner_parts(owner);
        let mut tx = self.begin().await?;
        let mut unleased = lock_allocation(&mut tx, owner, default).await?;
        // Expired leases (their servers stopped renewing) go back first.
        let expired: Vec<i64> = sqlx::query_scalar(
            "DELETE FROM allocation_leases WHERE owner_kind = $1 AND owner_id = $2 AND expires_at_ms < $3 RETURNING micros",
        )
        .bind(kind)
        .bind(id)
        .bind(request.now_ms)
        .fetch_all(&mut *tx)
        .await
        .map_err(unavailable)?;
        unleased = unleased.saturating_add(expired.iter().sum::<i64>());
        let granted = unleased
            .min(request.need.max(request.want.min(unleased / 4)))
            .max(0);
        sqlx::query(
            "UPDATE allocations SET balance_micros = $3 WHERE owner_kind = $1 AND owner_id = $2",
        )
        .bind(kind)
        .bind(id)
        .bind(unleased - granted)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        let held: i64 = sqlx::query_scalar(
            "INSERT INTO allocation_leases (owner_kind, owner_id, holder, micros, expires_at_ms) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (owner_kind, owner_id, holder) DO UPDATE SET micros = allocation_leases.micros + excluded.micros, \
             expires_at_ms = excluded.expires_at_ms RETURNING micros",
        )
        .bind(kind)
        .bind(id)
        .bind(holder)
        .bind(granted)
        .bind(request.expires_at_ms)
        .fetch_one(&mut *tx)
        .await
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(AllocationLease {
            granted,
            held,
            unleased: unleased - granted,
        })
    }

    async fn return_allocation(
        &self,
        owner: Owner,
        holder: &str,
        micros: i64,
    ) -> Result<i64, StoreError> {
        let (kind, id) = owner_parts(owner);
        let mut tx = self.begin().await?;
        lock_allocation(&mut tx, owner, 0).await?;
        let held: Option<i64> = sqlx::query_scalar(
            "SELECT micros FROM allocation_leases WHERE owner_kind = $1 AND owner_id = $2 AND holder = $3",
        )
        .bind(kind)
        .bind(id)
        .bind(holder)
        .fetch_optional(&mut *tx)
        .await
        .map_err(unavailable)?;
        let Some(held) = held else {
            return Ok(0);
        };
        // A lease overspent (negative) is settled whole: the balance pays it.
        let returned = if micros >= held { held } else { micros.max(0) };
        if returned == held {
            sqlx::query(
                "DELETE FROM allocation_leases WHERE owner_kind = $1 AND owner_id = $2 AND holder = $3",
            )
            .bind(kind)
            .bind(id)
            .bind(holder)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        } else {
            sqlx::query(
                "UPDATE allocation_leases SET micros = micros - $4 WHERE owner_kind = $1 AND owner_id = $2 AND holder = $3",
            )
            .bind(kind)
            .bind(id)
            .bind(holder)
            .bind(returned)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        }
        add_to_balance(&mut tx, kind, id, returned).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(returned)
    }

    async fn renew_allocation_leases(
        &self,
        holder: &str,
        expires_at_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<(Owner, i64)>, StoreError> {
        sqlx::query("UPDATE allocation_leases SET expires_at_ms = $2 WHERE holder = $1")
            .bind(holder)
            .bind(expires_at_ms)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        // Other servers' expired leases, one owner at a time (each under
        // its allocation's lock, like every lease change).
        let expired = sqlx::query(
            "SELECT DISTINCT owner_kind, owner_id FROM allocation_leases WHERE expires_at_ms < $1",
        )
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        for row in expired {
            let kind: String = row.try_get(0).map_err(unavailable)?;
            let id: i64 = row.try_get(1).map_err(unavailable)?;
            let owner = owner_from(&kind, id)?;
            let mut tx = self.begin().await?;
            lock_allocation(&mut tx, owner, 0).await?;
            let returned: Vec<i64> = sqlx::query_scalar(
                "DELETE FROM allocation_leases WHERE owner_kind = $1 AND owner_id = $2 AND expires_at_ms < $3 RETURNING micros",
            )
            .bind(&kind)
            .bind(id)
            .bind(now_ms)
            .fetch_all(&mut *tx)
            .await
            .map_err(unavailable)?;
            add_to_balance(&mut tx, &kind, id, returned.iter().sum::<i64>()).await?;
            tx.commit().await.map_err(unavailable)?;
        }
        let held = sqlx::query(
            "SELECT owner_kind, owner_id, micros FROM allocation_leases WHERE holder = $1",
        )
        .bind(holder)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        held.into_iter()
            .map(|row| {
                let kind: String = row.try_get(0).map_err(unavailable)?;
                let id: i64 = row.try_get(1).map_err(unavailable)?;
                Ok((owner_from(&kind, id)?, row.try_get(2).map_err(unavailable)?))
            })
            .collect()
    }

    async fn record_usage(
        &self,
        records: &[UsageRecord],
        default: i64,
        holder: &str,
    ) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let mut tx = self.begin().await?;
        // Many rows per statement, not one per record (how is the driver's).
        for chunk in records.chunks(500) {
            insert_usage(&mut tx, chunk).await?;
        }
        // One debit per owner, from this server's lease when it holds one;
        // owners in a fixed order, so concurrent writers lock alike.
        let mut debits: BTreeMap<(&'static str, i64), (Owner, i64)> = BTreeMap::new();
        for r in records
            .iter()
            .filter(|r| r.source == SourceKind::Gateway && r.cost_micros > 0)
        {
            let entry = debits.entry(owner_parts(r.owner)).or_insert((r.owner, 0));
            entry.1 += as_i64(r.cost_micros);
        }
        for ((kind, id), (owner, cost)) in debits {
            lock_allocation(&mut tx, owner, default).await?;
            let leased = sqlx::query(
                "UPDATE allocation_leases SET micros = micros - $4 WHERE owner_kind = $1 AND owner_id = $2 AND holder = $3",
            )
            .bind(kind)
            .bind(id)
            .bind(holder)
            .bind(cost)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
            if leased.rows_affected() == 0 {
                add_to_balance(&mut tx, kind, id, -cost).await?;
            }
        }
        tx.commit().await.map_err(unavailable)
    }

    async fn usage_summary(
        &self,
        owners: &[Owner],
        since: SystemTime,
        by: UsageGrouping,
    ) -> Result<Vec<UsageRow>, StoreError> {
        let key = match by {
            UsageGrouping::Total => "CAST('' AS TEXT)",
            UsageGrouping::Vm => "CAST(vm_id AS TEXT)",
            UsageGrouping::Integration => "CAST(integration_id AS TEXT)",
            UsageGrouping::Model => "COALESCE(model, '')",
            UsageGrouping::Provider => "provider",
        };
        // PostgreSQL sums integers as NUMERIC; the cast keeps them BIGINT.
        let sum = |e: &str| format!("CAST(COALESCE(SUM({e}), 0) AS BIGINT)");
        let mut rows = Vec::new();
        for owner in owners {
            let (kind, id) = owner_parts(*owner);
            let sql = format!(
                "SELECT {key} AS k, COUNT(*), {}, {}, {}, {}, {}, {}, {}, {}, {}, {} \
                 FROM usage_ledger WHERE owner_kind = $1 AND owner_id = $2 AND started_at_ms >= $3 GROUP BY k ORDER BY k",
                sum("input_tokens"),
                sum("output_tokens"),
                sum("cache_creation_tokens"),
                sum("cache_read_tokens"),
                sum("cost_micros"),
                sum("CASE WHEN source = 'gateway' THEN cost_micros ELSE 0 END"),
                sum("CASE WHEN estimated THEN 1 ELSE 0 END"),
                sum("CASE WHEN status BETWEEN 100 AND 399 THEN 1 ELSE 0 END"),
                sum("CASE WHEN status BETWEEN 400 AND 499 THEN 1 ELSE 0 END"),
                sum("CASE WHEN status >= 500 OR status < 100 THEN 1 ELSE 0 END"),
            );
            for r in sqlx::query(&sql)
                .bind(kind)
                .bind(id)
                .bind(unix_ms(since))
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?
            {
                let n = |i: usize| -> Result<u64, StoreError> {
                    Ok(r.try_get::<i64, _>(i).map_err(unavailable)?.max(0) as u64)
                };
                let key: String = r.try_get(0).map_err(unavailable)?;
                if n(1)? == 0 {
                    continue;
                }
                rows.push(UsageRow {
                    key,
                    requests: n(1)?,
                    tokens: TokenUsage {
                        input: n(2)?,
                        output: n(3)?,
                        cache_creation: n(4)?,
                        cache_read: n(5)?,
                    },
                    cost_micros: n(6)?,
                    debited_micros: n(7)?,
                    estimated: n(8)?,
                    ok: n(9)?,
                    refused: n(10)?,
                    failed: n(11)?,
                });
            }
        }
        Ok(rows)
    }

    async fn add_ssh_key(&self, user: UserId, key: &SshKeyRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO ssh_keys (user_id, fingerprint, public_key, comment) VALUES ($1, $2, $3, $4)",
        )
        .bind(user.0)
        .bind(&key.fingerprint)
        .bind(&key.public_key)
        .bind(&key.comment)
        .execute(&self.pool)
        .await
        .map_err(conflict(
            "that SSH key is registered already; `ssh-key list` shows yours",
        ))?;
        Ok(())
    }

    async fn ssh_keys(&self, user: UserId) -> Result<Vec<SshKeyRecord>, StoreError> {
        sqlx::query(
            "SELECT fingerprint, public_key, comment FROM ssh_keys WHERE user_id = $1 ORDER BY id",
        )
        .bind(user.0)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?
        .into_iter()
        .map(|r| {
            Ok(SshKeyRecord {
                fingerprint: r.try_get(0)?,
                public_key: r.try_get(1)?,
                comment: r.try_get(2)?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(unavailable)
    }

    async fn delete_ssh_key(&self, user: UserId, fingerprint: &str) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM ssh_keys WHERE user_id = $1 AND fingerprint = $2")
            .bind(user.0)
            .bind(fingerprint)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "you have no SSH key {fingerprint}; `ssh-key list` shows yours"
            )));
        }
        Ok(())
    }

    async fn user_by_ssh_key(&self, fingerprint: &str) -> Result<Option<UserId>, StoreError> {
        let id: Option<i64> =
            sqlx::query_scalar("SELECT user_id FROM ssh_keys WHERE fingerprint = $1")
                .bind(fingerprint)
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
        Ok(id.map(UserId))
    }

    async fn hold_lock(&self, name: &str) -> Result<StoreLock, StoreError> {
        hold_lock(self, name).await
    }

    async fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)
    }

    async fn init_meta(&self, key: &str, value: &[u8]) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(done.rows_affected() == 1)
    }

    async fn close(&self) {
        Store::close(self).await;
    }
}
