//! The etcd Auth service while tessera has no authentication: AuthStatus
//! says it is disabled, AuthDisable has nothing to do, and every other
//! method answers etcd's "authentication is not enabled" (FAILED_PRECONDITION).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::Reply;
use crate::proto::etcdserverpb::auth_server::Auth;
use crate::proto::etcdserverpb::*;
use crate::router::Router;

pub struct AuthService {
    pub router: Arc<Router>,
}

fn not_enabled() -> Status {
    Status::failed_precondition("etcdserver: authentication is not enabled")
}

/// Methods that only make sense with authentication enabled. (Spelled as
/// `#[tonic::async_trait]` expands methods: it does not look into macros.)
macro_rules! refused {
    ($($method:ident($req:ty) -> $resp:ty;)*) => {
        $(
            fn $method<'life0, 'async_trait>(
                &'life0 self,
                _request: Request<$req>,
            ) -> Pin<Box<dyn Future<Output = Reply<$resp>> + Send + 'async_trait>>
            where
                'life0: 'async_trait,
                Self: 'async_trait,
            {
                Box::pin(std::future::ready(Err(not_enabled())))
            }
        )*
    };
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_status(&self, _request: Request<AuthStatusRequest>) -> Reply<AuthStatusResponse> {
        Ok(Response::new(AuthStatusResponse {
            header: Some(self.router.current_header()),
            enabled: false,
            auth_revision: 0,
        }))
    }

    async fn auth_disable(&self, _request: Request<AuthDisableRequest>) -> Reply<AuthDisableResponse> {
        Ok(Response::new(AuthDisableResponse { header: Some(self.router.current_header()) }))
    }

    refused! {
        auth_enable(AuthEnableRequest) -> AuthEnableResponse;
        authenticate(AuthenticateRequest) -> AuthenticateResponse;
        user_add(AuthUserAddRequest) -> AuthUserAddResponse;
        user_get(AuthUserGetRequest) -> AuthUserGetResponse;
        user_list(AuthUserListRequest) -> AuthUserListResponse;
        user_delete(AuthUserDeleteRequest) -> AuthUserDeleteResponse;
        user_change_password(AuthUserChangePasswordRequest) -> AuthUserChangePasswordResponse;
        user_grant_role(AuthUserGrantRoleRequest) -> AuthUserGrantRoleResponse;
        user_revoke_role(AuthUserRevokeRoleRequest) -> AuthUserRevokeRoleResponse;
        role_add(AuthRoleAddRequest) -> AuthRoleAddResponse;
        role_get(AuthRoleGetRequest) -> AuthRoleGetResponse;
        role_list(AuthRoleListRequest) -> AuthRoleListResponse;
        role_delete(AuthRoleDeleteRequest) -> AuthRoleDeleteResponse;
        role_grant_permission(AuthRoleGrantPermissionRequest) -> AuthRoleGrantPermissionResponse;
        role_revoke_permission(AuthRoleRevokePermissionRequest) -> AuthRoleRevokePermissionResponse;
    }
}
