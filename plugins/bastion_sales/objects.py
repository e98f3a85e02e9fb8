"""The sales objects: leads, opportunities and their pipelines, products, price books,
quotes, quotas, and the rules administrators edit (scoring, assignment).

Everything is a definition, so each object gets its table, forms, REST API, import,
search, audit and record scope from the core like any other. Fields marked
``read_only`` are computed by this plugin (scores, totals, links a conversion makes)
and written only through the system's record service.
"""

from __future__ import annotations

from bastion.api import FieldDefinition as F
from bastion.api import ObjectDefinition, ValidationRule

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
LEAD_STATUSES = ("new", "working", "nurturing", "qualified", "unqualified", "converted")
LEAD_SOURCES = ("web", "referral", "event", "partner", "cold_call", "advertisement", "other")
RATINGS = ("hot", "warm", "cold")
OUTCOMES = ("open", "won", "lost")
FORECAST_CATEGORIES = ("pipeline", "best_case", "commit", "omitted")
QUOTE_STATUSES = ("draft", "sent", "accepted", "declined")
APPROVAL_STATES = ("not_required", "pending", "approved", "rejected")
SCORING_KINDS = ("field_value", "activity", "inactivity")
SCORING_OPERATORS = ("eq", "ne", "contains", "gt", "lt", "empty", "not_empty")
ACTIVITY_KINDS = ("call", "meeting", "email", "note", "task")
ASSIGNMENT_METHODS = ("round_robin", "territory")
PERIOD_KINDS = ("month", "quarter")

LEADS = ObjectDefinition(
    name="leads",
    label="Lead",
    label_plural="Leads",
    icon="target",
    name_field="full_name",
    description="People and companies who may become customers.",
    fields=(
        F("first_name", "text", "First name", searchable=True, personal_data=True,
          max_length=100, section="Lead"),
        F("last_name", "text", "Last name", required=True, searchable=True, indexed=True,
          personal_data=True, max_length=100, section="Lead"),
        F("full_name", "formula", "Name", formula="concat(first_name, ' ', last_name)",
          section="Lead"),
        F("company", "text", "Company", searchable=True, indexed=True, max_length=255,
          section="Lead"),
        F("title", "text", "Title", searchable=True, max_length=100, section="Lead"),
        F("email", "email", "Email", searchable=True, indexed=True, personal_data=True,
          section="Lead"),
        F("phone", "phone", "Phone", searchable=True, indexed=True, personal_data=True,
          section="Lead"),
        F("status", "picklist", "Status", options=LEAD_STATUSES, required=True, default="new",
          indexed=True, section="Qualification"),
        F("source", "picklist", "Source", options=LEAD_SOURCES, indexed=True,
          section="Qualification"),
        F("rating", "picklist", "Rating", options=RATINGS, indexed=True,
          section="Qualification"),
        F("score", "integer", "Score", default=0, indexed=True, read_only=True,
          help_text="Computed from the scoring rules; see Score on the lead.",
          section="Qualification"),
        F("industry", "picklist", "Industry", options=INDUSTRIES, indexed=True,
          section="Company"),
        F("website", "url", "Website", section="Company"),
        F("employees", "integer", "Employees", min_value=0, section="Company"),
        F("city", "text", "City", indexed=True, section="Company"),
        F("country", "text", "Country", indexed=True, section="Company"),
        F("territory", "text", "Territory", indexed=True, max_length=100,
          help_text="Matched by territory assignment rules.", section="Company"),
        F("description", "long_text", "Description", searchable=True, section="Details"),
        F("last_activity_at", "datetime", "Last activity", indexed=True, read_only=True,
          section="Details"),
        F("converted_at", "datetime", "Converted", read_only=True, section="Conversion"),
        F("converted_account", "lookup", "Converted account", target="accounts",
          on_delete="clear", read_only=True, section="Conversion"),
        F("converted_contact", "lookup", "Converted contact", target="contacts",
          on_delete="clear", read_only=True, section="Conversion"),
        F("converted_opportunity", "lookup", "Converted opportunity", target="opportunities",
          on_delete="clear", read_only=True, section="Conversion"),
    ),
    duplicate_keys=(("email",), ("phone",), ("first_name", "last_name", "company")),
)

PIPELINES = ObjectDefinition(
    name="pipelines",
    label="Pipeline",
    label_plural="Pipelines",
    icon="columns",
    name_field="name",
    description="Sales processes, each with its own ordered stages.",
    fields=(
        F("name", "text", "Name", required=True, unique=True, searchable=True, max_length=100),
        F("is_default", "boolean", "Default pipeline", default=False),
        F("active", "boolean", "Active", default=True),
        F("description", "long_text", "Description"),
    ),
)

PIPELINE_STAGES = ObjectDefinition(
    name="pipeline_stages",
    label="Pipeline stage",
    label_plural="Pipeline stages",
    icon="list",
    name_field="name",
    description="One step of a pipeline, with its order and win probability.",
    fields=(
        F("name", "text", "Name", required=True, searchable=True, max_length=100),
        F("pipeline", "lookup", "Pipeline", target="pipelines", required=True,
          on_delete="restrict", indexed=True),
        F("position", "integer", "Position", required=True, min_value=0, max_value=1000),
        F("probability", "percent", "Probability", required=True, min_value=0,
          max_value=100, scale=0),
        F("outcome", "picklist", "Outcome", options=OUTCOMES, required=True, default="open"),
        F("forecast_category", "picklist", "Forecast category", options=FORECAST_CATEGORIES,
          default="pipeline"),
    ),
)

OPPORTUNITIES = ObjectDefinition(
    name="opportunities",
    label="Opportunity",
    label_plural="Opportunities",
    icon="trending-up",
    name_field="name",
    description="Deals in progress, moving through a pipeline's stages.",
    fields=(
        F("name", "text", "Name", required=True, searchable=True, indexed=True,
          max_length=255, section="Opportunity"),
        F("account", "lookup", "Account", target="accounts", on_delete="restrict",
          indexed=True, section="Opportunity"),
        F("primary_contact", "lookup", "Primary contact", target="contacts",
          on_delete="clear", section="Opportunity"),
        F("amount", "currency", "Amount", min_value=0, section="Opportunity"),
        F("close_date", "date", "Close date", required=True, indexed=True,
          section="Opportunity"),
        F("pipeline", "lookup", "Pipeline", target="pipelines", on_delete="restrict",
          indexed=True, section="Stage"),
        F("stage", "lookup", "Stage", target="pipeline_stages", on_delete="restrict",
          indexed=True, section="Stage"),
        F("probability", "percent", "Probability", min_value=0, max_value=100, scale=0,
          help_text="Taken from the stage unless you change it.", section="Stage"),
        F("forecast_category", "picklist", "Forecast category", options=FORECAST_CATEGORIES,
          indexed=True, section="Stage"),
        F("outcome", "picklist", "Outcome", options=OUTCOMES, default="open", indexed=True,
          read_only=True, help_text="Follows the stage: won and lost stages close the deal.",
          section="Stage"),
        F("close_reason", "text", "Won or lost reason", max_length=255, section="Stage"),
        F("stage_entered_at", "datetime", "In stage since", read_only=True, section="Stage"),
        F("lead", "lookup", "Converted from lead", target="leads", on_delete="clear",
          read_only=True, section="Details"),
        F("last_activity_at", "datetime", "Last activity", indexed=True, read_only=True,
          section="Details"),
        F("description", "long_text", "Description", searchable=True, section="Details"),
    ),
    rules=(
        ValidationRule(
            "lost_needs_reason",
            "outcome != 'lost' or not is_empty(close_reason)",
            "Say why the opportunity was lost.",
            field="close_reason",
        ),
    ),
)

STAGE_HISTORY = ObjectDefinition(
    name="stage_history",
    label="Stage history entry",
    label_plural="Stage history",
    icon="clock",
    name_field="stage_name",
    description="Each stay of an opportunity in a stage, with how long it lasted.",
    fields=(
        F("opportunity", "lookup", "Opportunity", target="opportunities", on_delete="clear",
          indexed=True, read_only=True),
        F("stage", "lookup", "Stage", target="pipeline_stages", on_delete="clear",
          read_only=True),
        F("stage_name", "text", "Stage name", max_length=100, read_only=True),
        F("entered_at", "datetime", "Entered", indexed=True, read_only=True),
        F("left_at", "datetime", "Left", read_only=True),
        F("seconds_in_stage", "integer", "Seconds in stage", min_value=0, read_only=True),
    ),
)

PRODUCTS = ObjectDefinition(
    name="products",
    label="Product",
    label_plural="Products",
    icon="package",
    name_field="name",
    description="What you sell.",
    fields=(
        F("name", "text", "Name", required=True, searchable=True, indexed=True,
          max_length=255),
        F("code", "text", "Product code", unique=True, searchable=True, max_length=64),
        F("family", "text", "Family", indexed=True, max_length=100),
        F("unit", "text", "Unit", max_length=32, default="each"),
        F("active", "boolean", "Active", default=True, indexed=True),
        F("description", "long_text", "Description", searchable=True),
    ),
)

PRICE_BOOKS = ObjectDefinition(
    name="price_books",
    label="Price book",
    label_plural="Price books",
    icon="book",
    name_field="name",
    description="Lists of prices per product, in one currency.",
    fields=(
        F("name", "text", "Name", required=True, unique=True, searchable=True, max_length=100),
        F("currency", "text", "Currency", required=True, default="EUR", pattern="^[A-Z]{3}$",
          max_length=3),
        F("is_standard", "boolean", "Standard price book", default=False),
        F("active", "boolean", "Active", default=True),
        F("description", "long_text", "Description"),
    ),
)

PRICE_BOOK_ENTRIES = ObjectDefinition(
    name="price_book_entries",
    label="Price",
    label_plural="Prices",
    icon="tag",
    name_field="product_name",
    description="A product's price in a price book.",
    fields=(
        F("price_book", "lookup", "Price book", target="price_books", required=True,
          on_delete="restrict", indexed=True),
        F("product", "lookup", "Product", target="products", required=True,
          on_delete="restrict", indexed=True),
        F("product_name", "text", "Product name", max_length=255, read_only=True),
        F("unit_price", "decimal", "Unit price", required=True, min_value=0, scale=2),
        F("active", "boolean", "Active", default=True),
    ),
)

QUOTES = ObjectDefinition(
    name="quotes",
    label="Quote",
    label_plural="Quotes",
    icon="file-text",
    name_field="number",
    description="Priced offers for an opportunity, with line items and approval.",
    fields=(
        F("number", "auto_number", "Quote number", format="Q-{00000}", section="Quote"),
        F("title", "text", "Title", searchable=True, max_length=255, section="Quote"),
        F("opportunity", "lookup", "Opportunity", target="opportunities", required=True,
          on_delete="restrict", indexed=True, section="Quote"),
        F("account", "lookup", "Account", target="accounts", on_delete="clear",
          section="Quote"),
        F("contact", "lookup", "Contact", target="contacts", on_delete="clear",
          section="Quote"),
        F("price_book", "lookup", "Price book", target="price_books", required=True,
          on_delete="restrict", section="Quote"),
        F("currency", "text", "Currency", max_length=3, read_only=True, section="Quote"),
        F("status", "picklist", "Status", options=QUOTE_STATUSES, default="draft",
          required=True, indexed=True, section="Quote"),
        F("valid_until", "date", "Valid until", section="Quote"),
        F("subtotal", "decimal", "Subtotal", scale=2, read_only=True, section="Totals"),
        F("discount_total", "decimal", "Discount", scale=2, read_only=True,
          section="Totals"),
        F("tax_total", "decimal", "Tax", scale=2, read_only=True, section="Totals"),
        F("total", "decimal", "Total", scale=2, read_only=True, section="Totals"),
        F("max_discount", "percent", "Largest line discount", scale=2, read_only=True,
          section="Approval"),
        F("approval_status", "picklist", "Approval", options=APPROVAL_STATES,
          default="not_required", read_only=True, indexed=True, section="Approval"),
        F("approval_comment", "long_text", "Approval comment", read_only=True,
          section="Approval"),
        F("approved_at", "datetime", "Approved or rejected at", read_only=True,
          section="Approval"),
        F("approval_requested_by", "integer", "Approval requested by", read_only=True,
          section="Approval"),
        F("terms", "long_text", "Terms", section="Details"),
    ),
)

QUOTE_LINES = ObjectDefinition(
    name="quote_lines",
    label="Quote line",
    label_plural="Quote lines",
    icon="list",
    name_field="description",
    description="One product on a quote: quantity, price, discount and tax.",
    fields=(
        F("quote", "lookup", "Quote", target="quotes", required=True, on_delete="restrict",
          indexed=True),
        F("product", "lookup", "Product", target="products", required=True,
          on_delete="restrict"),
        F("description", "text", "Description", max_length=255),
        F("position", "integer", "Position", min_value=0, default=0),
        F("quantity", "decimal", "Quantity", required=True, min_value=0, scale=4),
        F("unit_price", "decimal", "Unit price", min_value=0, scale=2,
          help_text="From the quote's price book when left empty."),
        F("discount_percent", "percent", "Discount %", min_value=0, max_value=100, scale=2,
          default=0),
        F("tax_rate", "percent", "Tax rate %", min_value=0, max_value=100, scale=3,
          default=0),
        F("line_subtotal", "decimal", "Amount", scale=2, read_only=True),
        F("line_discount", "decimal", "Discount", scale=2, read_only=True),
        F("line_tax", "decimal", "Tax", scale=2, read_only=True),
        F("line_total", "decimal", "Line total", scale=2, read_only=True),
    ),
)

QUOTAS = ObjectDefinition(
    name="sales_quotas",
    label="Quota",
    label_plural="Quotas",
    icon="flag",
    name_field="period",
    description="A sales target for one person (the owner) in one month or quarter.",
    fields=(
        F("period", "text", "Period", required=True, indexed=True, pattern=
          r"^\d{4}-(0[1-9]|1[0-2]|Q[1-4])$", max_length=7,
          help_text="A month such as 2026-11 or a quarter such as 2026-Q4."),
        F("amount", "currency", "Quota", required=True, min_value=0),
    ),
)

SCORING_RULES = ObjectDefinition(
    name="lead_scoring_rules",
    label="Scoring rule",
    label_plural="Scoring rules",
    icon="star",
    name_field="name",
    description="Points a lead earns for its field values and its activity.",
    fields=(
        F("name", "text", "Name", required=True, max_length=100),
        F("kind", "picklist", "Kind", options=SCORING_KINDS, required=True,
          default="field_value"),
        F("field", "text", "Lead field", max_length=50,
          help_text="For field rules: the lead field to test, such as industry."),
        F("operator", "picklist", "Test", options=SCORING_OPERATORS, default="eq"),
        F("value", "text", "Value", max_length=255),
        F("activity_kind", "picklist", "Activity kind", options=ACTIVITY_KINDS,
          help_text="For activity rules: a done activity of this kind earns the points."),
        F("days", "integer", "Days without activity", min_value=1, max_value=3650),
        F("points", "integer", "Points", required=True, min_value=-1000, max_value=1000),
        F("active", "boolean", "Active", default=True, indexed=True),
    ),
)

ASSIGNMENT_RULES = ObjectDefinition(
    name="lead_assignment_rules",
    label="Assignment rule",
    label_plural="Assignment rules",
    icon="shuffle",
    name_field="name",
    description="Who gets a new lead: round robin within a team, or by territory.",
    fields=(
        F("name", "text", "Name", required=True, max_length=100),
        F("position", "integer", "Order", required=True, default=10, min_value=0),
        F("method", "picklist", "Method", options=ASSIGNMENT_METHODS, required=True,
          default="round_robin"),
        F("territory_field", "text", "Lead field", max_length=50, default="territory",
          help_text="For territory rules: the lead field to match."),
        F("territory_value", "text", "Matches", max_length=255),
        F("team", "text", "Team", max_length=100,
          help_text="Round robin among this team's active members."),
        F("assignee", "email", "Assign to",
          help_text="For territory rules: the user who gets matching leads."),
        F("last_assigned", "integer", "Last assigned user", read_only=True),
        F("active", "boolean", "Active", default=True, indexed=True),
    ),
)

SALES_OBJECTS = (
    LEADS,
    PIPELINES,
    PIPELINE_STAGES,
    OPPORTUNITIES,
    STAGE_HISTORY,
    PRODUCTS,
    PRICE_BOOKS,
    PRICE_BOOK_ENTRIES,
    QUOTES,
    QUOTE_LINES,
    QUOTAS,
    SCORING_RULES,
    ASSIGNMENT_RULES,
)
