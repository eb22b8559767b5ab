"""learnhub's models, all on one metadata (``Base.metadata``)."""

from __future__ import annotations

from learnhub.models.analytics import Event, PageView, UserActivity
from learnhub.models.base import Base
from learnhub.models.content import (
    Attachment,
    Category,
    Comment,
    Content,
    ContentVersion,
    Rating,
    Tag,
    Visibility,
    WorkflowState,
    WorkflowTransition,
    content_tags,
)
from learnhub.models.users import (
    EmailVerificationToken,
    Organization,
    PasswordResetToken,
    Permission,
    Profile,
    Role,
    User,
    UserSession,
    role_permissions,
    user_roles,
)
from pgwarden.orm import audit_log_table

audit_log = audit_log_table(Base.metadata)

__all__ = [
    "Attachment",
    "Base",
    "Category",
    "Comment",
    "Content",
    "ContentVersion",
    "EmailVerificationToken",
    "Event",
    "Organization",
    "PageView",
    "PasswordResetToken",
    "Permission",
    "Profile",
    "Rating",
    "Role",
    "Tag",
    "User",
    "UserActivity",
    "UserSession",
    "Visibility",
    "WorkflowState",
    "WorkflowTransition",
    "audit_log",
    "content_tags",
    "role_permissions",
    "user_roles",
]
