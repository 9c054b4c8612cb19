//! The server's credential resolver: gateway keys from the environment,
//! `byok` keys opened from their sealed form.
//!
//! Sealed keys are cached in memory after their first use (a stored key
//! never changes: a new key gets a new id, and ids are never reused), so
//! the hot path makes no database round trip; the cache is keyed by the
//! id and by the owner and provider that asked for it, so even a store
//! that reused an id could not hand one owner's key to another; a key is opened (decrypted) only to build the
//! upstream request, and dropped (zeroized) with it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use llm_integration_core::seams::{
    ControlStore, Credential, CredentialError, CredentialResolver, SealedSecret,
};
use llm_integration_core::{CredentialId, CredentialRef, Owner, Provider, SecretString};

use crate::crypto::{purpose, MasterKey};
use crate::upstreams::GatewayKeys;

/// Resolves credentials for the data plane.
pub struct ServerCredentials {
    gateway: GatewayKeys,
    chatgpt: Arc<crate::chatgpt::ChatGpt>,
    store: Arc<dyn ControlStore>,
    key: Arc<MasterKey>,
    sealed: RwLock<HashMap<(CredentialId, Owner, Provider), SealedSecret>>,
}

impl ServerCredentials {
    /// A resolver over `store`'s keys and the `gateway` keys.
    pub fn new(
        gateway: GatewayKeys,
        store: Arc<dyn ControlStore>,
        key: Arc<MasterKey>,
        chatgpt: Arc<crate::chatgpt::ChatGpt>,
    ) -> Self {
        ServerCredentials {
            gateway,
            chatgpt,
            store,
            key,
            sealed: RwLock::new(HashMap::new()),
        }
    }

    async fn sealed(
        &self,
        id: CredentialId,
        owner: Owner,
        provider: Provider,
    ) -> Result<SealedSecret, CredentialError> {
        let key = (id, owner, provider);
        if let Some(s) = self.sealed.read().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(s);
        }
        let sealed = self
            .store
            .sealed_credential(id)
            .await
            .map_err(|e| CredentialError::Unavailable(e.to_string()))?
            .ok_or_else(|| {
                CredentialError::NotConfigured(
                    "the integration's stored key (it was removed)".into(),
                )
            })?;
        if let Ok(mut m) = self.sealed.write() {
            m.insert(key, sealed.clone());
        }
        Ok(sealed)
    }
}

#[async_trait]
impl CredentialResolver for ServerCredentials {
    async fn resolve(
        &self,
        owner: Owner,
        provider: Provider,
        source: CredentialRef<'_>,
    ) -> Result<Credential, CredentialError> {
        match source {
            CredentialRef::Gateway(p) => self
                .gateway
                .get(p)
                .map(|secret| Credential { secret: secret.clone(), account_id: None })
                .ok_or_else(|| {
                    CredentialError::NotConfigured(format!(
                        "the gateway source of {provider} on this server; the operator sets {}",
                        GatewayKeys::env_var(p)
                    ))
                }),
            CredentialRef::ApiKey(id) => {
                let sealed = self.sealed(id, owner, provider).await?;
                let plain = self.key.open(&sealed, purpose::API_KEY).map_err(|e| CredentialError::Unavailable(e.to_string()))?;
                let text = std::str::from_utf8(&plain).map_err(|_| CredentialError::Unavailable("a stored key is not UTF-8".into()))?;
                Ok(Credential { secret: SecretString::from(text.to_owned()), account_id: None })
            }
            // Nothing is injected (the plan's scheme sends nothing).
            CredentialRef::Anonymous => Ok(Credential { secret: SecretString::from(String::new()), account_id: None }),
            CredentialRef::ChatGpt(account) => match owner {
                Owner::User(user) => self.chatgpt.credential(user, account).await,
                Owner::Team(_) => Err(CredentialError::NeedsOwner(
                    "team integrations cannot use a ChatGPT subscription; use --openai=gateway or --openai=byok".into(),
                )),
            },
        }
    }
}
