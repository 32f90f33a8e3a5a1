//! IAM adapter: the reads that make up a user's state, and one method per write.

use std::sync::Arc;

use aws_sdk_iam::types::{AssignmentStatusType, StatusType, Tag};
use aws_sdk_iam::Client;

use super::gather::{Gathering, Until};
use super::{call, classify, AwsError, Budget, ErrorKind, Retry};
use crate::password::{PasswordPolicy, Secret};
use crate::state::{Attachments, Lookup, UserInfo};

/// The inline policy that stops every key and session of a leaver at once.
pub const DENY_ALL_DOCUMENT: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"HrProvisionerRetired","Effect":"Deny","Action":"*","Resource":"*"}]}"#;

#[derive(Clone)]
pub struct Iam {
    client: Client,
    /// Local emulators lack a few IAM APIs; only there may an unimplemented read be
    /// taken as "nothing of that kind". Never set against real AWS.
    pub tolerate_unsupported: bool,
    /// Scan the account for a case-insensitive holder of a name GetUser does not
    /// find, before creating it: only for emulators, which (unlike IAM) accept a
    /// name that differs from an existing one only in case. See [`Iam::lookup`].
    pub case_scan: bool,
    /// The case scan in flight, if any: joiners that start together (a batch)
    /// list the account once between them, not once each. See [`Iam::scan`].
    scan: Gathering<Scanned>,
}

/// The account's user names, listed once for every record waiting on them.
type Scanned = Result<Arc<Vec<String>>, AwsError>;

/// Which reads a plan needs: only a leaver looks at MFA devices (an active user
/// keeps them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    Joiner,
    Leaver,
}

macro_rules! op {
    ($budget:expr, $retry:expr, $name:literal, $req:expr) => {
        call($budget, $retry, || async {
            $req.send().await.map_err(|e| classify($name, e))
        })
    };
}

/// One list read of a user's attachments, mapped to names or ids. One page holds
/// 100 items, far above IAM's per-user limits: a longer list is refused, never
/// half-read.
macro_rules! listed {
    ($budget:expr, $name:literal, $req:expr, |$out:ident| $map:expr) => {
        async {
            let $out = op!($budget, Retry::Safe, $name, $req).await?;
            paged_check($out.is_truncated(), $name)?;
            Ok::<_, AwsError>($map)
        }
    };
}

impl Iam {
    /// `tolerate_unsupported` (an emulator) also turns the up-front case scan on.
    pub fn new(client: Client, tolerate_unsupported: bool) -> Self {
        Iam {
            client,
            tolerate_unsupported,
            case_scan: tolerate_unsupported,
            scan: Gathering::default(),
        }
    }

    /// Overrides the up-front case scan (e.g. to measure the AWS path on an emulator).
    pub fn with_case_scan(mut self, on: bool) -> Self {
        self.case_scan = on;
        self
    }

    /// [`Iam::lookup`] for a record that most likely finds no user (a joiner).
    /// Where the case scan is made up front (`case_scan`: an emulator), the scan
    /// comes first and GetUser only when it lists the name, so a fresh joiner
    /// costs one read instead of two. Against AWS it is [`Iam::lookup`].
    pub async fn lookup_new(&self, name: &str, b: &Budget) -> Result<Lookup, AwsError> {
        if !self.case_scan {
            return self.lookup(name, b).await;
        }
        match self.case_holder(name, b).await? {
            None => Ok(Lookup::Absent),
            Some(h) if h != name => Ok(Lookup::Clash { existing: h }),
            Some(_) => self.lookup(name, b).await,
        }
    }

    /// Finds the user by name. IAM names are unique regardless of case: a user whose
    /// name differs only in case is a clash, never a match.
    ///
    /// When GetUser finds no such user, IAM itself guards the name: CreateUser
    /// refuses a name that differs from an existing one only in case
    /// (EntityAlreadyExists), so against AWS the name counts as free and no account-
    /// wide list is read per joiner. Only after such a refusal (the record's notes
    /// ask for it: the batch runs the record again) or against an emulator, which
    /// does not enforce it (`case_scan`), is the account listed for the holder.
    pub async fn lookup(&self, name: &str, b: &Budget) -> Result<Lookup, AwsError> {
        let c = &self.client;
        match op!(b, Retry::Safe, "GetUser", c.get_user().user_name(name)).await {
            Ok(out) => {
                let Some(u) = out.user() else {
                    return Err(AwsError::new(
                        "GetUser",
                        ErrorKind::Fatal,
                        "answer without a user",
                    ));
                };
                if u.user_name() != name {
                    return Ok(Lookup::Clash {
                        existing: u.user_name().to_owned(),
                    });
                }
                Ok(Lookup::Found(UserInfo {
                    name: u.user_name().to_owned(),
                    user_id: u.user_id().to_owned(),
                    path: u.path().to_owned(),
                    tags: u
                        .tags()
                        .iter()
                        .map(|t| (t.key().to_owned(), t.value().to_owned()))
                        .collect(),
                    boundary_arn: u
                        .permissions_boundary()
                        .and_then(|pb| pb.permissions_boundary_arn())
                        .map(str::to_owned),
                }))
            }
            Err(e) if e.kind == ErrorKind::NotFound => {
                let refused = super::notes().is_some_and(|n| n.case_scan());
                if !self.case_scan && !refused {
                    return Ok(Lookup::Absent);
                }
                match self.case_holder(name, b).await? {
                    // Listed under this very name but unknown to GetUser: IAM is
                    // eventually consistent (just created, e.g. by a run that crashed).
                    Some(h) if h == name => Err(AwsError::new(
                        "GetUser",
                        ErrorKind::Transient,
                        "the user is listed but not yet readable (eventual consistency)",
                    )),
                    Some(h) => Ok(Lookup::Clash { existing: h }),
                    None => Ok(Lookup::Absent),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// The account's user whose name equals `name` regardless of case, if any
    /// (every path: a holder anywhere makes the name taken).
    async fn case_holder(&self, name: &str, b: &Budget) -> Result<Option<String>, AwsError> {
        let names = self.scan(b).await?;
        Ok(names.iter().find(|u| u.eq_ignore_ascii_case(name)).cloned())
    }

    /// Every user name in the account. A scan not yet answered is joined, never an
    /// answered one: a record never gets an answer older than the moment it joined
    /// minus one round trip. On an emulator each joiner scanned, and a batch of ten
    /// made ten full lists (ListUsers of the whole account: the longer, the more users).
    async fn scan(&self, b: &Budget) -> Scanned {
        self.scan
            .share("", "", usize::MAX, Until::Answered, |_| async {
                list_user_names(&self.client, b).await.map(Arc::new)
            })
            .await
    }

    /// Everything attached to an existing user, read concurrently.
    pub async fn attachments(
        &self,
        name: &str,
        depth: Depth,
        b: &Budget,
    ) -> Result<Attachments, AwsError> {
        let c = &self.client;
        let groups = listed!(
            b,
            "ListGroupsForUser",
            c.list_groups_for_user().user_name(name),
            |out| {
                out.groups()
                    .iter()
                    .map(|g| g.group_name().to_owned())
                    .collect()
            }
        );
        let attached = listed!(
            b,
            "ListAttachedUserPolicies",
            c.list_attached_user_policies().user_name(name),
            |out| {
                out.attached_policies()
                    .iter()
                    .filter_map(|p| p.policy_arn().map(str::to_owned))
                    .collect()
            }
        );
        let inline = listed!(
            b,
            "ListUserPolicies",
            c.list_user_policies().user_name(name),
            |out| out.policy_names().iter().cloned().collect()
        );
        let profile = async {
            match op!(
                b,
                Retry::Safe,
                "GetLoginProfile",
                c.get_login_profile().user_name(name)
            )
            .await
            {
                Ok(_) => Ok(true),
                Err(e) if e.kind == ErrorKind::NotFound => Ok(false),
                Err(e) => Err(e),
            }
        };
        let keys = listed!(
            b,
            "ListAccessKeys",
            c.list_access_keys().user_name(name),
            |out| {
                out.access_key_metadata()
                    .iter()
                    .filter_map(|k| {
                        let id = k.access_key_id()?.to_owned();
                        let created = k.create_date().map(format_date).unwrap_or_default();
                        let inactive = k.status() == Some(&StatusType::Inactive);
                        Some((id, created, inactive))
                    })
                    .collect::<Vec<(String, String, bool)>>()
            }
        );
        let (groups, attached_policies, inline_policies, login_profile, keys) =
            futures::try_join!(groups, attached, inline, profile, keys)?;
        let mut att = Attachments {
            groups,
            attached_policies,
            inline_policies,
            login_profile,
            access_keys: keys.iter().map(|(id, ..)| id.clone()).collect(),
            inactive_keys: keys
                .iter()
                .filter(|k| k.2)
                .map(|(id, ..)| id.clone())
                .collect(),
            key_created: keys.into_iter().map(|(id, c, _)| (id, c)).collect(),
            ..Attachments::default()
        };
        // Planted credentials (contract section 5, "nothing planted survives") are
        // read whenever the function acts on a user, joiner and mover included.
        let probe = &self.probe_budget(b);
        let ssh = self.unless_unsupported(listed!(
            probe,
            "ListSSHPublicKeys",
            c.list_ssh_public_keys().user_name(name),
            |out| {
                out.ssh_public_keys()
                    .iter()
                    .map(|k| k.ssh_public_key_id().to_owned())
                    .collect()
            }
        ));
        let certs = self.unless_unsupported(listed!(
            probe,
            "ListSigningCertificates",
            c.list_signing_certificates().user_name(name),
            |out| {
                out.certificates()
                    .iter()
                    .map(|k| k.certificate_id().to_owned())
                    .collect()
            }
        ));
        let service = self.unless_unsupported(listed!(
            probe,
            "ListServiceSpecificCredentials",
            c.list_service_specific_credentials().user_name(name),
            |out| {
                out.service_specific_credentials()
                    .iter()
                    .map(|k| k.service_specific_credential_id().to_owned())
                    .collect()
            }
        ));
        let mfa = async {
            if depth != Depth::Leaver {
                return Ok((Vec::new(), Vec::new()));
            }
            let mfa = listed!(
                b,
                "ListMFADevices",
                c.list_mfa_devices().user_name(name),
                |out| {
                    out.mfa_devices()
                        .iter()
                        .map(|d| d.serial_number().to_owned())
                        .collect()
                }
            );
            futures::try_join!(mfa, self.unassigned_virtual_mfa_named(name, b))
        };
        let (ssh, certs, service, (mfa, orphans)) = futures::try_join!(ssh, certs, service, mfa)?;
        att.mfa_devices = mfa;
        att.ssh_keys = ssh;
        att.signing_certs = certs;
        att.service_credentials = service;
        att.orphan_virtual_mfa = orphans;
        Ok(att)
    }

    /// The budget of a call an emulator may lack (see `unless_unsupported`): one
    /// attempt there, since its "not implemented" 500 looks like a fault worth a
    /// retry ([`ErrorKind::EmulatorFault`]); throttling is still retried. Against
    /// AWS, the caller's budget.
    fn probe_budget(&self, b: &Budget) -> Budget {
        if self.tolerate_unsupported {
            Budget {
                max_attempts: 1,
                ..*b
            }
        } else {
            *b
        }
    }

    /// Local emulators lack some of the leaver's lists (moto: service-specific
    /// credentials; ministack: SSH keys, signing certificates, service-specific
    /// credentials). Only against an emulator is "not implemented" taken as "none",
    /// with a WARN; against AWS it fails the record (after the cut-off).
    async fn unless_unsupported<T: Default>(
        &self,
        read: impl std::future::Future<Output = Result<T, AwsError>>,
    ) -> Result<T, AwsError> {
        match read.await {
            Err(e)
                if matches!(e.kind, ErrorKind::Unsupported | ErrorKind::EmulatorFault)
                    && self.tolerate_unsupported =>
            {
                tracing::warn!(
                    op = e.op,
                    "endpoint does not implement the call; treated as none (emulator only)"
                );
                Ok(T::default())
            }
            r => r,
        }
    }

    /// A leaver's first read: only whether the deny-all is on (the managed policy
    /// when `deny_arn` is set, else the inline one), so that the cut-off needs
    /// nothing else to succeed. A failing read counts as "not on": the deny is
    /// put on again, which is harmless.
    pub async fn deny_check(&self, name: &str, deny_arn: Option<&str>, b: &Budget) -> Attachments {
        let c = &self.client;
        let mut att = Attachments {
            partial: true,
            ..Attachments::default()
        };
        let read = match deny_arn {
            Some(_) => listed!(
                b,
                "ListAttachedUserPolicies",
                c.list_attached_user_policies().user_name(name),
                |out| {
                    out.attached_policies()
                        .iter()
                        .filter_map(|p| p.policy_arn().map(str::to_owned))
                        .collect()
                }
            )
            .await
            .map(|p| att.attached_policies = p),
            None => listed!(
                b,
                "ListUserPolicies",
                c.list_user_policies().user_name(name),
                |out| out.policy_names().iter().cloned().collect()
            )
            .await
            .map(|p| att.inline_policies = p),
        };
        if let Err(e) = read {
            tracing::warn!(user_name = name, error = %e, "deny-all check failed; the cut-off puts it on (if the user is ours)");
        }
        att
    }

    /// A template user for a rule's `copy_from`: its groups and attached managed
    /// policies. Only a user at `template_path` with no credentials of its own is a
    /// template (an operator marked it so); anything else is refused with a reason.
    pub async fn template(
        &self,
        name: &str,
        template_path: &str,
        b: &Budget,
    ) -> Result<Result<(Vec<String>, Vec<String>), String>, AwsError> {
        let c = &self.client;
        let user = match op!(b, Retry::Safe, "GetUser", c.get_user().user_name(name)).await {
            Ok(out) => out.user().cloned(),
            Err(e) if e.kind == ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let Some(user) = user.filter(|u| u.user_name() == name) else {
            return Ok(Err(format!(
                "copy_from template user {name} does not exist"
            )));
        };
        if !user.path().starts_with(template_path) {
            return Ok(Err(format!(
                "copy_from user {name} is at path {}, not under TEMPLATE_PATH {template_path}: not a template",
                user.path()
            )));
        }
        // Exactly the reads the role allows on template users: inline policies are
        // never copied, so they are not read.
        let groups = listed!(
            b,
            "ListGroupsForUser",
            c.list_groups_for_user().user_name(name),
            |out| out
                .groups()
                .iter()
                .map(|g| g.group_name().to_owned())
                .collect::<Vec<_>>()
        );
        let policies = listed!(
            b,
            "ListAttachedUserPolicies",
            c.list_attached_user_policies().user_name(name),
            |out| {
                out.attached_policies()
                    .iter()
                    .filter_map(|p| p.policy_arn().map(str::to_owned))
                    .collect::<Vec<_>>()
            }
        );
        let keys = listed!(
            b,
            "ListAccessKeys",
            c.list_access_keys().user_name(name),
            |out| out.access_key_metadata().len()
        );
        let profile = async {
            match op!(
                b,
                Retry::Safe,
                "GetLoginProfile",
                c.get_login_profile().user_name(name)
            )
            .await
            {
                Ok(_) => Ok(true),
                Err(e) if e.kind == ErrorKind::NotFound => Ok(false),
                Err(e) => Err(e),
            }
        };
        let (groups, policies, keys, login_profile) =
            futures::try_join!(groups, policies, keys, profile)?;
        if login_profile || keys > 0 {
            return Ok(Err(format!(
                "copy_from template user {name} has credentials of its own (a console password or an access key): not a template"
            )));
        }
        Ok(Ok((groups, policies)))
    }

    /// Unassigned virtual MFA devices whose name is the user's: what a crash between
    /// deactivating and deleting a leaver's device leaves behind. Devices are named
    /// after their user by the self-service MFA convention (`mfa/${aws:username}`).
    async fn unassigned_virtual_mfa_named(
        &self,
        name: &str,
        b: &Budget,
    ) -> Result<Vec<String>, AwsError> {
        let c = &self.client;
        let devices = call(b, Retry::Safe, || async {
            c.list_virtual_mfa_devices()
                .assignment_status(AssignmentStatusType::Unassigned)
                .into_paginator()
                .page_size(1000)
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|e| classify("ListVirtualMFADevices", e))
        })
        .await?;
        Ok(devices
            .iter()
            .map(|d| d.serial_number())
            .filter(|s| s.rsplit('/').next() == Some(name))
            .map(str::to_owned)
            .collect())
    }

    pub async fn password_policy(&self, b: &Budget) -> Result<PasswordPolicy, AwsError> {
        match op!(
            b,
            Retry::Safe,
            "GetAccountPasswordPolicy",
            self.client.get_account_password_policy()
        )
        .await
        {
            Ok(out) => {
                let Some(p) = out.password_policy() else {
                    return Ok(PasswordPolicy::default());
                };
                Ok(PasswordPolicy {
                    min_length: p.minimum_password_length().unwrap_or(8).max(0) as usize,
                    require_symbols: p.require_symbols(),
                    require_numbers: p.require_numbers(),
                    require_uppercase: p.require_uppercase_characters(),
                    require_lowercase: p.require_lowercase_characters(),
                })
            }
            Err(e) if e.kind == ErrorKind::NotFound => Ok(PasswordPolicy::default()),
            Err(e) => Err(e),
        }
    }

    pub async fn account_alias(&self, b: &Budget) -> Result<Option<String>, AwsError> {
        let out = op!(
            b,
            Retry::Safe,
            "ListAccountAliases",
            self.client.list_account_aliases()
        )
        .await?;
        Ok(out.account_aliases().first().cloned())
    }

    pub async fn create_user(
        &self,
        name: &str,
        path: &str,
        tags: &[(String, String)],
        boundary: Option<&str>,
        b: &Budget,
    ) -> Result<String, AwsError> {
        let tags = to_tags(tags)?;
        let out = op!(
            b,
            Retry::ThrottleOnly,
            "CreateUser",
            self.client
                .create_user()
                .user_name(name)
                .path(path)
                .set_tags(Some(tags.clone()))
                .set_permissions_boundary(boundary.map(str::to_owned))
        )
        .await?;
        // The UserId goes on the secret (hr:user-id): it finds the user after a rename.
        Ok(out
            .user()
            .map(|u| u.user_id().to_owned())
            .unwrap_or_default())
    }

    /// The name of the user under `path` whose IAM `UserId` is `user_id`: how a
    /// leaver finds a user renamed with UpdateUser (the id survives a rename).
    /// One list of the path, paged by 1,000.
    pub async fn name_of_user_id(
        &self,
        user_id: &str,
        path: &str,
        b: &Budget,
    ) -> Result<Option<String>, AwsError> {
        let c = &self.client;
        let users: Vec<_> = call(b, Retry::Safe, || async {
            c.list_users()
                .path_prefix(path)
                .into_paginator()
                .page_size(1000)
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|e| classify("ListUsers", e))
        })
        .await?;
        Ok(users
            .iter()
            .find(|u| u.user_id() == user_id)
            .map(|u| u.user_name().to_owned()))
    }

    pub async fn tag_user(
        &self,
        name: &str,
        tags: &[(String, String)],
        retry: Retry,
        b: &Budget,
    ) -> Result<(), AwsError> {
        let tags = to_tags(tags)?;
        op!(
            b,
            retry,
            "TagUser",
            self.client
                .tag_user()
                .user_name(name)
                .set_tags(Some(tags.clone()))
        )
        .await
        .map(drop)
    }

    pub async fn put_boundary(
        &self,
        name: &str,
        arn: &str,
        retry: Retry,
        b: &Budget,
    ) -> Result<bool, AwsError> {
        let probe = &self.probe_budget(b);
        let put = op!(
            probe,
            retry,
            "PutUserPermissionsBoundary",
            self.client
                .put_user_permissions_boundary()
                .user_name(name)
                .permissions_boundary(arn)
        );
        // moto neither keeps a user's boundary nor implements this call: against an
        // emulator only, "not implemented" is reported as not made (false).
        match self
            .unless_unsupported(async { put.await.map(|_| true) })
            .await
        {
            Ok(made) => Ok(made),
            Err(e) => Err(e),
        }
    }

    pub async fn untag_user(
        &self,
        name: &str,
        keys: &[String],
        b: &Budget,
    ) -> Result<(), AwsError> {
        op!(
            b,
            Retry::Safe,
            "UntagUser",
            self.client
                .untag_user()
                .user_name(name)
                .set_tag_keys(Some(keys.to_vec()))
        )
        .await
        .map(drop)
    }

    pub async fn put_deny_all(&self, name: &str, b: &Budget) -> Result<(), AwsError> {
        op!(
            b,
            Retry::Safe,
            "PutUserPolicy",
            self.client
                .put_user_policy()
                .user_name(name)
                .policy_name(crate::state::DENY_ALL_POLICY)
                .policy_document(DENY_ALL_DOCUMENT)
        )
        .await
        .map(drop)
    }

    pub async fn delete_user_policy(
        &self,
        name: &str,
        policy: &str,
        b: &Budget,
    ) -> Result<(), AwsError> {
        gone_ok(
            op!(
                b,
                Retry::Safe,
                "DeleteUserPolicy",
                self.client
                    .delete_user_policy()
                    .user_name(name)
                    .policy_name(policy)
            )
            .await,
        )
    }

    pub async fn add_to_group(
        &self,
        name: &str,
        group: &str,
        retry: Retry,
        b: &Budget,
    ) -> Result<(), AwsError> {
        op!(
            b,
            retry,
            "AddUserToGroup",
            self.client
                .add_user_to_group()
                .user_name(name)
                .group_name(group)
        )
        .await
        .map(drop)
    }

    pub async fn remove_from_group(
        &self,
        name: &str,
        group: &str,
        b: &Budget,
    ) -> Result<(), AwsError> {
        gone_ok(
            op!(
                b,
                Retry::Safe,
                "RemoveUserFromGroup",
                self.client
                    .remove_user_from_group()
                    .user_name(name)
                    .group_name(group)
            )
            .await,
        )
    }

    pub async fn attach_policy(
        &self,
        name: &str,
        arn: &str,
        retry: Retry,
        b: &Budget,
    ) -> Result<(), AwsError> {
        op!(
            b,
            retry,
            "AttachUserPolicy",
            self.client
                .attach_user_policy()
                .user_name(name)
                .policy_arn(arn)
        )
        .await
        .map(drop)
    }

    pub async fn detach_policy(&self, name: &str, arn: &str, b: &Budget) -> Result<(), AwsError> {
        gone_ok(
            op!(
                b,
                Retry::Safe,
                "DetachUserPolicy",
                self.client
                    .detach_user_policy()
                    .user_name(name)
                    .policy_arn(arn)
            )
            .await,
        )
    }

    pub async fn delete_access_key(
        &self,
        name: &str,
        id: &str,
        b: &Budget,
    ) -> Result<(), AwsError> {
        gone_ok(
            op!(
                b,
                Retry::Safe,
                "DeleteAccessKey",
                self.client
                    .delete_access_key()
                    .user_name(name)
                    .access_key_id(id)
            )
            .await,
        )
    }

    /// Returns the key id, its secret half (which exists only in this answer) and
    /// its creation time.
    pub async fn create_access_key(
        &self,
        name: &str,
        b: &Budget,
    ) -> Result<(String, Secret, String), AwsError> {
        let out = op!(
            b,
            Retry::ThrottleOnly,
            "CreateAccessKey",
            self.client.create_access_key().user_name(name)
        )
        .await?;
        let k = out.access_key().ok_or_else(|| {
            AwsError::new("CreateAccessKey", ErrorKind::Fatal, "answer without a key")
        })?;
        Ok((
            k.access_key_id().to_owned(),
            Secret::new(k.secret_access_key().to_owned()),
            k.create_date().map(format_date).unwrap_or_default(),
        ))
    }

    /// Creates the login profile; if one appeared meanwhile (a retried call that had
    /// in fact succeeded), it is set to the same password instead.
    pub async fn create_login_profile(
        &self,
        name: &str,
        password: &Secret,
        retry: Retry,
        b: &Budget,
    ) -> Result<&'static str, AwsError> {
        let r = op!(
            b,
            retry,
            "CreateLoginProfile",
            self.client
                .create_login_profile()
                .user_name(name)
                .password(password.expose())
                .password_reset_required(true)
        )
        .await;
        match r {
            Ok(_) => Ok("CreateLoginProfile"),
            Err(e) if e.kind == ErrorKind::AlreadyExists => {
                self.update_login_profile(name, password, b).await?;
                Ok("UpdateLoginProfile")
            }
            Err(e) => Err(e),
        }
    }

    pub async fn update_login_profile(
        &self,
        name: &str,
        password: &Secret,
        b: &Budget,
    ) -> Result<(), AwsError> {
        op!(
            b,
            Retry::Safe,
            "UpdateLoginProfile",
            self.client
                .update_login_profile()
                .user_name(name)
                .password(password.expose())
                .password_reset_required(true)
        )
        .await
        .map(drop)
    }

    pub async fn delete_login_profile(&self, name: &str, b: &Budget) -> Result<(), AwsError> {
        gone_ok(
            op!(
                b,
                Retry::Safe,
                "DeleteLoginProfile",
                self.client.delete_login_profile().user_name(name)
            )
            .await,
        )
    }

    pub async fn deactivate_mfa(
        &self,
        name: &str,
        serial: &str,
        b: &Budget,
    ) -> Result<(), AwsError> {
        gone_ok(
            op!(
                b,
                Retry::Safe,
                "DeactivateMFADevice",
                self.client
                    .deactivate_mfa_device()
                    .user_name(name)
                    .serial_number(serial)
            )
            .await,
        )
    }

    pub async fn delete_virtual_mfa(&self, serial: &str, b: &Budget) -> Result<(), AwsError> {
        gone_ok(
            op!(
                b,
                Retry::Safe,
                "DeleteVirtualMFADevice",
                self.client
                    .delete_virtual_mfa_device()
                    .serial_number(serial)
            )
            .await,
        )
    }

    pub async fn delete_ssh_key(&self, name: &str, id: &str, b: &Budget) -> Result<(), AwsError> {
        gone_ok(
            op!(
                b,
                Retry::Safe,
                "DeleteSSHPublicKey",
                self.client
                    .delete_ssh_public_key()
                    .user_name(name)
                    .ssh_public_key_id(id)
            )
            .await,
        )
    }

    pub async fn delete_signing_cert(
        &self,
        name: &str,
        id: &str,
        b: &Budget,
    ) -> Result<(), AwsError> {
        gone_ok(
            op!(
                b,
                Retry::Safe,
                "DeleteSigningCertificate",
                self.client
                    .delete_signing_certificate()
                    .user_name(name)
                    .certificate_id(id)
            )
            .await,
        )
    }

    pub async fn delete_service_credential(
        &self,
        name: &str,
        id: &str,
        b: &Budget,
    ) -> Result<(), AwsError> {
        gone_ok(
            op!(
                b,
                Retry::Safe,
                "DeleteServiceSpecificCredential",
                self.client
                    .delete_service_specific_credential()
                    .user_name(name)
                    .service_specific_credential_id(id)
            )
            .await,
        )
    }

    pub async fn delete_user(&self, name: &str, b: &Budget) -> Result<(), AwsError> {
        gone_ok(
            op!(
                b,
                Retry::Safe,
                "DeleteUser",
                self.client.delete_user().user_name(name)
            )
            .await,
        )
    }
}

/// An AWS timestamp as tags carry it (RFC 3339, UTC, seconds).
pub fn format_date(d: &aws_smithy_types::DateTime) -> String {
    time::OffsetDateTime::from_unix_timestamp(d.secs())
        .map(crate::event::format_utc)
        .unwrap_or_default()
}

/// A deletion whose target is already gone has done its job.
fn gone_ok<T>(r: Result<T, AwsError>) -> Result<(), AwsError> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The unpaginated list calls answer up to 100 items; a user with more is refused
/// rather than half-read.
fn paged_check(truncated: bool, op: &'static str) -> Result<(), AwsError> {
    if truncated {
        Err(AwsError::new(
            op,
            ErrorKind::Fatal,
            "more than one page of results",
        ))
    } else {
        Ok(())
    }
}

fn to_tags(tags: &[(String, String)]) -> Result<Vec<Tag>, AwsError> {
    tags.iter()
        .map(|(k, v)| {
            Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(|e| AwsError::new("TagUser", ErrorKind::Fatal, e.to_string()))
        })
        .collect()
}

/// Pages of 1,000 (IAM's maximum): one call for most accounts.
async fn list_user_names(c: &Client, b: &Budget) -> Result<Vec<String>, AwsError> {
    let users: Vec<_> = call(b, Retry::Safe, || async {
        c.list_users()
            .into_paginator()
            .page_size(1000)
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("ListUsers", e))
    })
    .await?;
    Ok(users.iter().map(|u| u.user_name().to_owned()).collect())
}
