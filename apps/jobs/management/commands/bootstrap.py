"""Create (or reuse) a tenant, a staff user who belongs to it and an API token; print JSON."""

from __future__ import annotations

import json
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from rest_framework.authtoken.models import Token

from apps.jobs.models import Membership, Tenant


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser) -> None:
        parser.add_argument("--tenant", default="demo", help="tenant slug")
        parser.add_argument("--username", default="admin")
        parser.add_argument("--password", default="", help="default: a new random password")
        parser.add_argument("--token", default="", help="default: the user's token or a new one")
        parser.add_argument("--enrollment-key", default="", help="default: the tenant's own")

    @transaction.atomic
    def handle(self, *args, **options) -> None:
        tenant, _ = Tenant.objects.get_or_create(
            slug=options["tenant"], defaults={"name": options["tenant"].title()}
        )
        if options["enrollment_key"]:
            tenant.enrollment_key = options["enrollment_key"]
            tenant.save(update_fields=["enrollment_key"])
        user, created = get_user_model().objects.get_or_create(
            username=options["username"], defaults={"is_staff": True, "is_superuser": True}
        )
        password = options["password"] or (secrets.token_urlsafe(12) if created else "")
        if password:
            user.set_password(password)
            user.save()
        Membership.objects.get_or_create(
            user=user, tenant=tenant, defaults={"role": Membership.Role.ADMIN}
        )
        if options["token"]:
            Token.objects.filter(user=user).delete()
            token = Token.objects.create(user=user, key=options["token"])
        else:
            token, _ = Token.objects.get_or_create(user=user)
        out = {
            "tenant": tenant.slug,
            "enrollment_key": tenant.enrollment_key,
            "username": user.username,
            "password": password or None,
            "token": token.key,
        }
        self.stdout.write(json.dumps(out))
