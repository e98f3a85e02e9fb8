"""Account, Contact and Activity: the objects every module builds on.

The core declares them through the same ``register_objects`` hook plugins use, so they
get their tables, forms, API and search exactly like any other object.
"""

from __future__ import annotations

from bastion.plugins.contributions import FieldDefinition as F
from bastion.plugins.contributions import ObjectDefinition, ValidationRule

INDUSTRIES = (
    "Banking",
    "Insurance",
    "Healthcare",
    "Public sector",
    "Education",
    "Manufacturing",
    "Retail",
    "Technology",
    "Energy",
    "Other",
)
ACTIVITY_KINDS = ("task", "call", "meeting", "email", "note")

ACCOUNTS = ObjectDefinition(
    name="accounts",
    label="Account",
    label_plural="Accounts",
    icon="building",
    name_field="name",
    description="Organizations you do business with.",
    fields=(
        F(
            "name",
            "text",
            "Account name",
            required=True,
            searchable=True,
            indexed=True,
            max_length=255,
            section="Account",
        ),
        F(
            "parent",
            "lookup",
            "Parent account",
            target="accounts",
            on_delete="clear",
            section="Account",
        ),
        F("industry", "picklist", "Industry", options=INDUSTRIES, indexed=True, section="Account"),
        F("website", "url", "Website", searchable=True, indexed=True, section="Account"),
        F("phone", "phone", "Phone", searchable=True, indexed=True, section="Account"),
        F("annual_revenue", "currency", "Annual revenue", min_value=0, section="Account"),
        F("employees", "integer", "Employees", min_value=0, section="Account"),
        F("street", "text", "Street", section="Address"),
        F("city", "text", "City", searchable=True, indexed=True, section="Address"),
        F("postal_code", "text", "Postal code", max_length=20, section="Address"),
        F("country", "text", "Country", section="Address"),
        F("description", "long_text", "Description", section="Details"),
    ),
    duplicate_keys=(("name",), ("phone",), ("website",)),
)

CONTACTS = ObjectDefinition(
    name="contacts",
    label="Contact",
    label_plural="Contacts",
    icon="user",
    name_field="full_name",
    description="People at your accounts.",
    fields=(
        F(
            "first_name",
            "text",
            "First name",
            searchable=True,
            personal_data=True,
            max_length=100,
            section="Contact",
        ),
        F(
            "last_name",
            "text",
            "Last name",
            required=True,
            searchable=True,
            indexed=True,
            personal_data=True,
            max_length=100,
            section="Contact",
        ),
        F(
            "full_name",
            "formula",
            "Name",
            formula="concat(first_name, ' ', last_name)",
            section="Contact",
        ),
        F(
            "account",
            "lookup",
            "Account",
            target="accounts",
            on_delete="restrict",
            section="Contact",
        ),
        F("title", "text", "Title", searchable=True, section="Contact"),
        F("department", "text", "Department", section="Contact"),
        F(
            "email",
            "email",
            "Email",
            searchable=True,
            indexed=True,
            personal_data=True,
            section="Contact",
        ),
        F(
            "phone",
            "phone",
            "Phone",
            searchable=True,
            indexed=True,
            personal_data=True,
            section="Contact",
        ),
        F("mobile", "phone", "Mobile", personal_data=True, section="Contact"),
        F("birthdate", "date", "Birthdate", personal_data=True, section="Details"),
        F("do_not_contact", "boolean", "Do not contact", default=False, section="Details"),
        F("street", "text", "Street", personal_data=True, section="Address"),
        F("city", "text", "City", section="Address"),
        F("postal_code", "text", "Postal code", max_length=20, section="Address"),
        F("country", "text", "Country", section="Address"),
        F("description", "long_text", "Description", section="Details"),
    ),
    duplicate_keys=(("email",), ("phone",), ("first_name", "last_name", "account")),
)

ACTIVITIES = ObjectDefinition(
    name="activities",
    label="Activity",
    label_plural="Activities",
    icon="calendar",
    name_field="subject",
    description="Tasks, calls, meetings, emails and notes, linked to any record.",
    fields=(
        F(
            "kind",
            "picklist",
            "Kind",
            options=ACTIVITY_KINDS,
            required=True,
            default="task",
            indexed=True,
        ),
        F("subject", "text", "Subject", required=True, searchable=True, max_length=255),
        F("related_to", "record_link", "Related to"),
        F("due_at", "datetime", "Due", indexed=True),
        F("done", "boolean", "Done", default=False, indexed=True),
        F("completed_at", "datetime", "Completed"),
        F("duration_minutes", "integer", "Duration (minutes)", min_value=0, max_value=10080),
        F("description", "long_text", "Notes", searchable=True),
    ),
    rules=(
        ValidationRule(
            "completed_only_when_done",
            "is_empty(completed_at) or done",
            "A completion time needs the activity to be marked done.",
            field="completed_at",
        ),
    ),
)

BASE_OBJECTS = (ACCOUNTS, CONTACTS, ACTIVITIES)
