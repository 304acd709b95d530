from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils.text import slugify

from accounts.models import Membership, Organization


@transaction.atomic
def create_organization(
    *,
    name: str,
    owner_username: str,
    owner_email: str = "",
    owner_password: str,
    slug: str = "",
    from_name: str = "",
    from_email: str = "",
) -> Organization:
    """An organization with its owner (created if new); default policies come with it."""
    organization = Organization.objects.create(
        name=name,
        slug=slug or slugify(name),
        from_name=from_name,
        from_email=from_email,
    )
    user_model = get_user_model()
    user = user_model.objects.filter(username=owner_username).first()
    if user is None:
        user = user_model.objects.create_user(
            username=owner_username, email=owner_email, password=owner_password
        )
    Membership.objects.create(user=user, organization=organization, role=Membership.Role.OWNER)
    return organization
