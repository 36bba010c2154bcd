//! The generic shapes the engine's modules take as API resources, on the same routes,
//! audit trail and checks as the others ([`super::resource_routes`]):
//!
//! - [`PolicySlot`]: a module's settings in a policy, at most one per policy
//!   (`/api/policies/{policy}/<module>`, the item at `.../<module>/0`), as greylisting's;
//! - [`PolicyRows`]: several rows per policy, addressed by position
//!   (`/api/policies/{policy}/<module>/{index}`);
//! - [`SetList`]: a set-wide list (`/api/<list>/{index}`): like groups, not for domain
//!   admins.
//!
//! Each module says where its data lives in the policy set and how its JSON body maps to
//! the engine's definition; validation stays with the engine's compiler
//! ([`crate::change::validate`]), plus the entry check a set-wide list gives.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;
use sluice_engine::model::{PolicyDef, PolicySetDef};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::resource::Resource;

/// The `i`th key, or "".
pub(crate) fn key(keys: &[String], i: usize) -> &str {
    keys.get(i).map_or("", String::as_str)
}

/// The policy called `name`, or 404.
pub(crate) fn policy<'d>(def: &'d PolicySetDef, name: &str) -> Result<&'d PolicyDef, ApiError> {
    def.policies
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| ApiError::not_found(format!("no policy named {name:?}")))
}

/// The policy called `name`, or 404.
pub(crate) fn policy_mut<'d>(
    def: &'d mut PolicySetDef,
    name: &str,
) -> Result<&'d mut PolicyDef, ApiError> {
    def.policies
        .iter_mut()
        .find(|p| p.name == name)
        .ok_or_else(|| ApiError::not_found(format!("no policy named {name:?}")))
}

/// A JSON body and the engine definition it stands for.
pub trait ModuleBody:
    Serialize + DeserializeOwned + ToSchema + Clone + Send + Sync + 'static
{
    /// The engine's definition.
    type Def: Serialize + Clone + Send + Sync + 'static;
    /// The body of a definition.
    fn from_def(d: &Self::Def) -> Self;
    /// The definition of a body.
    fn into_def(self) -> Self::Def;
    /// Sets the definition's `disabled`.
    fn set_disabled(d: &mut Self::Def, disabled: bool);
}

/// A module's settings in a policy, at most one per policy.
pub trait PolicySlot: Send + Sync + 'static {
    /// Its JSON form.
    type Body: ModuleBody;
    /// What it is called in messages (`policy's CheckSPF settings`).
    const KIND: &'static str;
    /// `/api/policies/{policy}/<module>`.
    const COLLECTION: &'static str;
    /// `/api/policies/{policy}/<module>/{index}`.
    const ITEM: &'static str;
    /// The policy's settings.
    fn slot(p: &PolicyDef) -> &Option<<Self::Body as ModuleBody>::Def>;
    /// The policy's settings, to change.
    fn slot_mut(p: &mut PolicyDef) -> &mut Option<<Self::Body as ModuleBody>::Def>;
    /// 422 naming the field for what the engine's compiler does not check (it may skip
    /// disabled settings); the compiler checks the rest after the change.
    fn check(_settings: &<Self::Body as ModuleBody>::Def) -> Result<(), ApiError> {
        Ok(())
    }
}

/// [`Resource`] of a [`PolicySlot`].
pub struct SlotResource<S>(PhantomData<fn() -> S>);

fn slot_mut<'d, S: PolicySlot>(
    def: &'d mut PolicySetDef,
    keys: &[String],
) -> Result<&'d mut <S::Body as ModuleBody>::Def, ApiError> {
    let name = key(keys, 0).to_owned();
    let index = key(keys, 1).to_owned();
    let p = policy_mut(def, &name)?;
    match (index.as_str(), S::slot_mut(p).as_mut()) {
        ("0", Some(d)) => Ok(d),
        _ => Err(ApiError::not_found(format!(
            "policy {name:?} has no {} at {index:?} (there is at most one, at 0)",
            S::KIND
        ))),
    }
}

impl<S: PolicySlot> Resource for SlotResource<S> {
    type Body = S::Body;
    const KIND: &'static str = S::KIND;
    const COLLECTION: &'static str = S::COLLECTION;
    const ITEM: &'static str = S::ITEM;
    const IN_POLICY: bool = true;

    fn list(def: &PolicySetDef, parent: &[String]) -> Result<Vec<S::Body>, ApiError> {
        let p = policy(def, key(parent, 0))?;
        Ok(S::slot(p).iter().map(S::Body::from_def).collect())
    }

    fn get(def: &PolicySetDef, keys: &[String]) -> Result<S::Body, ApiError> {
        let mut def = def.clone();
        slot_mut::<S>(&mut def, keys).map(|d| S::Body::from_def(&*d))
    }

    fn snapshot(def: &PolicySetDef, keys: &[String]) -> Option<serde_json::Value> {
        let p = def.policies.iter().find(|p| p.name == key(keys, 0))?;
        S::slot(p)
            .as_ref()
            .filter(|_| key(keys, 1) == "0")
            .and_then(|d| serde_json::to_value(d).ok())
    }

    fn create(
        def: &mut PolicySetDef,
        parent: &[String],
        body: S::Body,
    ) -> Result<Vec<String>, ApiError> {
        let name = key(parent, 0).to_owned();
        let p = policy_mut(def, &name)?;
        let slot = S::slot_mut(p);
        let settings = body.into_def();
        S::check(&settings)?;
        if slot.is_some() {
            let path = S::COLLECTION.replace("{policy}", &name);
            return Err(ApiError::conflict(format!(
                "policy {name:?} has a {} already: change it at {path}/0",
                S::KIND
            )));
        }
        *slot = Some(settings);
        Ok(vec![name, "0".into()])
    }

    fn update(
        def: &mut PolicySetDef,
        keys: &[String],
        body: S::Body,
    ) -> Result<Vec<String>, ApiError> {
        let settings = body.into_def();
        S::check(&settings)?;
        *slot_mut::<S>(def, keys)? = settings;
        Ok(keys.to_vec())
    }

    fn delete(def: &mut PolicySetDef, keys: &[String]) -> Result<(), ApiError> {
        slot_mut::<S>(def, keys)?;
        *S::slot_mut(policy_mut(def, key(keys, 0))?) = None;
        Ok(())
    }

    fn set_disabled(
        def: &mut PolicySetDef,
        keys: &[String],
        disabled: bool,
    ) -> Result<(), ApiError> {
        S::Body::set_disabled(slot_mut::<S>(def, keys)?, disabled);
        Ok(())
    }
}

/// A module's rows in a policy, several per policy, addressed by position.
pub trait PolicyRows: Send + Sync + 'static {
    /// Its JSON form.
    type Body: ModuleBody;
    /// What one is called in messages (`accounting row`).
    const KIND: &'static str;
    /// `/api/policies/{policy}/<module>`.
    const COLLECTION: &'static str;
    /// `/api/policies/{policy}/<module>/{index}`.
    const ITEM: &'static str;
    /// The policy's rows.
    fn rows(p: &PolicyDef) -> &Vec<<Self::Body as ModuleBody>::Def>;
    /// The policy's rows, to change.
    fn rows_mut(p: &mut PolicyDef) -> &mut Vec<<Self::Body as ModuleBody>::Def>;
}

/// [`Resource`] of a [`PolicyRows`].
pub struct RowsResource<S>(PhantomData<fn() -> S>);

fn row_position<S: PolicyRows>(def: &PolicySetDef, keys: &[String]) -> Result<usize, ApiError> {
    let name = key(keys, 0);
    let len = S::rows(policy(def, name)?).len();
    key(keys, 1)
        .parse::<usize>()
        .ok()
        .filter(|&i| i < len)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "policy {name:?} has no {} at position {:?} (it has {len}, numbered from 0)",
                S::KIND,
                key(keys, 1)
            ))
        })
}

impl<S: PolicyRows> Resource for RowsResource<S> {
    type Body = S::Body;
    const KIND: &'static str = S::KIND;
    const COLLECTION: &'static str = S::COLLECTION;
    const ITEM: &'static str = S::ITEM;
    const IN_POLICY: bool = true;

    fn list(def: &PolicySetDef, parent: &[String]) -> Result<Vec<S::Body>, ApiError> {
        let p = policy(def, key(parent, 0))?;
        Ok(S::rows(p).iter().map(S::Body::from_def).collect())
    }

    fn get(def: &PolicySetDef, keys: &[String]) -> Result<S::Body, ApiError> {
        let i = row_position::<S>(def, keys)?;
        Ok(S::Body::from_def(&S::rows(policy(def, key(keys, 0))?)[i]))
    }

    fn snapshot(def: &PolicySetDef, keys: &[String]) -> Option<serde_json::Value> {
        let i = row_position::<S>(def, keys).ok()?;
        let p = policy(def, key(keys, 0)).ok()?;
        serde_json::to_value(&S::rows(p)[i]).ok()
    }

    fn create(
        def: &mut PolicySetDef,
        parent: &[String],
        body: S::Body,
    ) -> Result<Vec<String>, ApiError> {
        let name = key(parent, 0).to_owned();
        let rows = S::rows_mut(policy_mut(def, &name)?);
        rows.push(body.into_def());
        Ok(vec![name, (rows.len() - 1).to_string()])
    }

    fn update(
        def: &mut PolicySetDef,
        keys: &[String],
        body: S::Body,
    ) -> Result<Vec<String>, ApiError> {
        let i = row_position::<S>(def, keys)?;
        S::rows_mut(policy_mut(def, key(keys, 0))?)[i] = body.into_def();
        Ok(keys.to_vec())
    }

    fn delete(def: &mut PolicySetDef, keys: &[String]) -> Result<(), ApiError> {
        let i = row_position::<S>(def, keys)?;
        S::rows_mut(policy_mut(def, key(keys, 0))?).remove(i);
        Ok(())
    }

    fn set_disabled(
        def: &mut PolicySetDef,
        keys: &[String],
        disabled: bool,
    ) -> Result<(), ApiError> {
        let i = row_position::<S>(def, keys)?;
        S::Body::set_disabled(
            &mut S::rows_mut(policy_mut(def, key(keys, 0))?)[i],
            disabled,
        );
        Ok(())
    }
}

/// A set-wide list of a module (not for domain admins).
pub trait SetList: Send + Sync + 'static {
    /// Its JSON form.
    type Body: ModuleBody;
    /// What one entry is called in messages (`CheckHelo blacklist entry`).
    const KIND: &'static str;
    /// `/api/<list>`.
    const COLLECTION: &'static str;
    /// `/api/<list>/{index}`.
    const ITEM: &'static str;
    /// The list.
    fn entries(def: &PolicySetDef) -> &Vec<<Self::Body as ModuleBody>::Def>;
    /// The list, to change.
    fn entries_mut(def: &mut PolicySetDef) -> &mut Vec<<Self::Body as ModuleBody>::Def>;
    /// The field that identifies an entry (`helo`, `source`): unique in the list.
    const KEY_FIELD: &'static str;
    /// The value of [`Self::KEY_FIELD`].
    fn key_of(entry: &<Self::Body as ModuleBody>::Def) -> &str;
    /// 422 naming the field when one entry is not valid (checked as if enabled).
    fn check(entry: &<Self::Body as ModuleBody>::Def) -> Result<(), ApiError>;
}

/// 422 naming the key field when another entry than `except` has the same key (the stores
/// keep each key once).
fn check_unique<S: SetList>(
    def: &PolicySetDef,
    entry: &<S::Body as ModuleBody>::Def,
    except: Option<usize>,
) -> Result<(), ApiError> {
    let k = S::key_of(entry);
    match S::entries(def)
        .iter()
        .enumerate()
        .find(|(i, e)| Some(*i) != except && S::key_of(e) == k)
    {
        Some((i, _)) => Err(ApiError::invalid(
            S::KEY_FIELD,
            format!(
                "{k:?} is listed already, at {}/{i}: change that entry instead",
                S::COLLECTION
            ),
        )),
        None => Ok(()),
    }
}

/// [`Resource`] of a [`SetList`].
pub struct ListResource<S>(PhantomData<fn() -> S>);

fn entry_position<S: SetList>(def: &PolicySetDef, keys: &[String]) -> Result<usize, ApiError> {
    let len = S::entries(def).len();
    key(keys, 0)
        .parse::<usize>()
        .ok()
        .filter(|&i| i < len)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no {} at position {:?} (there are {len}, numbered from 0)",
                S::KIND,
                key(keys, 0)
            ))
        })
}

impl<S: SetList> Resource for ListResource<S> {
    type Body = S::Body;
    const KIND: &'static str = S::KIND;
    const COLLECTION: &'static str = S::COLLECTION;
    const ITEM: &'static str = S::ITEM;
    const IN_POLICY: bool = false;

    fn list(def: &PolicySetDef, _: &[String]) -> Result<Vec<S::Body>, ApiError> {
        Ok(S::entries(def).iter().map(S::Body::from_def).collect())
    }

    fn get(def: &PolicySetDef, keys: &[String]) -> Result<S::Body, ApiError> {
        let i = entry_position::<S>(def, keys)?;
        Ok(S::Body::from_def(&S::entries(def)[i]))
    }

    fn snapshot(def: &PolicySetDef, keys: &[String]) -> Option<serde_json::Value> {
        let i = entry_position::<S>(def, keys).ok()?;
        serde_json::to_value(&S::entries(def)[i]).ok()
    }

    fn create(
        def: &mut PolicySetDef,
        _: &[String],
        body: S::Body,
    ) -> Result<Vec<String>, ApiError> {
        let entry = body.into_def();
        S::check(&entry)?;
        check_unique::<S>(def, &entry, None)?;
        let list = S::entries_mut(def);
        list.push(entry);
        Ok(vec![(list.len() - 1).to_string()])
    }

    fn update(
        def: &mut PolicySetDef,
        keys: &[String],
        body: S::Body,
    ) -> Result<Vec<String>, ApiError> {
        let i = entry_position::<S>(def, keys)?;
        let entry = body.into_def();
        S::check(&entry)?;
        check_unique::<S>(def, &entry, Some(i))?;
        S::entries_mut(def)[i] = entry;
        Ok(keys.to_vec())
    }

    fn delete(def: &mut PolicySetDef, keys: &[String]) -> Result<(), ApiError> {
        let i = entry_position::<S>(def, keys)?;
        S::entries_mut(def).remove(i);
        Ok(())
    }

    fn set_disabled(
        def: &mut PolicySetDef,
        keys: &[String],
        disabled: bool,
    ) -> Result<(), ApiError> {
        let i = entry_position::<S>(def, keys)?;
        S::Body::set_disabled(&mut S::entries_mut(def)[i], disabled);
        Ok(())
    }
}
