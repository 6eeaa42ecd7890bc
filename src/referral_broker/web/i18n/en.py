"""Every text of the patient pages in English. Keys match `nb.py` exactly."""

from __future__ import annotations

MESSAGES: dict[str, str] = {
    # The frame around every page
    "site.name": "Referral Broker",
    "site.tagline": "Send a request safely and encrypted to private clinics",
    "site.skip": "Skip to content",
    "site.language_switch": "Norsk",
    "site.language_switch_label": "Les denne siden på norsk",
    "site.footer_privacy": (
        "Your information is sent encrypted, and only to the clinics you choose. "
        "We use no tracking, no analytics, and only the cookies the site needs to work "
        "(form protection and language choice)."
    ),
    "site.footer_home": "Back to the start",
    "date.format": "{day} {month_name} {year} at {hour:02d}:{minute:02d}",
    "date.months": "January,February,March,April,May,June,July,August,September,October,November,December",
    # The clinic finder
    "home.title": "Find a clinic",
    "home.intro": (
        "Choose one or more clinics, then fill in one form. Your request is encrypted before it is stored, "
        "so only the clinics you choose can read it."
    ),
    "home.steps": "Step 1 of 2: choose clinics",
    "home.filter_legend": "Narrow the list",
    "home.filter_category": "What do you need help with?",
    "home.filter_city": "City",
    "home.filter_any_category": "All fields",
    "home.filter_any_city": "All cities",
    "home.filter_submit": "Show clinics",
    "home.filter_clear": "Show all clinics",
    "home.count": "{count} clinics match",
    "home.count_one": "1 clinic matches",
    "home.none": "No clinic matches your choice. Try another field or another city.",
    "home.no_clinics": "There are no clinics to choose from yet. Please try again later.",
    "home.choose_legend": "Choose the clinics to send to",
    "home.choose_hint": "You can choose several. You will see their names again before you give consent.",
    "home.treats": "Treats",
    "home.city": "Location",
    "home.continue": "Continue to the form",
    "home.error_title": "Choose something before you continue",
    "home.choose_error": "Choose at least one clinic",
    "home.unknown_clinic": "One of the clinics you chose cannot receive requests now. Please choose again.",
    # The form
    "form.title": "Send your request",
    "form.steps": "Step 2 of 2: fill in and give consent",
    "form.chosen": "You are sending to",
    "form.change_clinics": "Change the clinics you chose",
    "form.required_note": "Every field must be filled in, except those marked “optional”.",
    "form.need_legend": "What is your request about?",
    "form.category": "Field (optional)",
    "form.category_none": "Choose a field",
    "form.description": "Describe what you need help with",
    "form.description_hint": "Use your own words. Only the clinics you chose can read this.",
    "form.about_legend": "About you",
    "form.name": "Full name",
    "form.email": "E-mail address",
    "form.email_hint": "For example kari@example.no",
    "form.phone": "Mobile number",
    "form.phone_hint": "For example 412 34 567. Write numbers from abroad with their country code, like +46.",
    "form.birth_date": "Date of birth",
    "form.birth_date_hint": "dd.mm.yyyy, for example 17.05.1990",
    "form.consent_legend": "Consent",
    "form.consent_intro": "Read this before you tick the box:",
    "form.consent_clinics": "The clinics you chose, which will receive the request:",
    "form.consent_withdraw": (
        "How to withdraw: after sending you get a receipt with a private link. Open the link and press "
        "“Withdraw consent”. Everything not yet delivered is stopped at once."
    ),
    "form.consent_version": "Consent text, version {version}",
    "form.consent_checkbox": "I have read the text above and consent to the request being sent to {clinics}.",
    "form.honeypot": "Leave this field empty",
    "form.submit": "Send the request",
    "form.error_title": "Something must be fixed before the request can be sent",
    "form.error_intro": "Nothing has been stored yet. Please fix:",
    "form.error_prefix": "Error:",
    "form.and": "and",
    # Messages next to fields
    "error.clinics.required": "Choose at least one clinic",
    "error.clinics.duplicate": "Each clinic can be chosen once",
    "error.clinics.unknown": "One of the clinics no longer exists. Go back and choose again.",
    "error.clinics.unavailable": "One of the clinics cannot receive requests now. Go back and choose again.",
    "error.clinics.invalid": "Choose the clinics from the list",
    "error.category.unknown": "Choose a field from the list",
    "error.category.invalid": "Choose a field from the list",
    "error.description.required": "Describe what you need help with",
    "error.description.invalid": "The description is too long. Please shorten it (10,000 characters at most).",
    "error.name.required": "Write your full name",
    "error.name.invalid": "Write your full name (200 characters at most)",
    "error.email.required": "Write your e-mail address",
    "error.email.invalid": "Write a valid e-mail address, for example kari@example.no",
    "error.phone.required": "Write your mobile number",
    "error.phone.invalid": "Write a valid phone number, for example 412 34 567 or +47 412 34 567",
    "error.birth_date.required": "Write your date of birth",
    "error.birth_date.format": "Write your date of birth as dd.mm.yyyy, for example 17.05.1990",
    "error.birth_date.invalid": "This date of birth is not possible. Check the day, month and year.",
    "error.birth_date.too_young": (
        "You must be at least {minimum_age} years old to send a request yourself. "
        "Ask a parent or guardian to send it for you."
    ),
    "error.consent.required": "Tick the consent box to send the request",
    "error.consent.outdated": "The consent text has changed. Read the new text and tick the box again.",
    "error.consent.invalid": "Tick the consent box to send the request",
    "error.generic": "Check this field",
    # The receipt
    "receipt.title": "Your request has been sent",
    "receipt.lead": "Thank you. Your request is encrypted and stored, and is now being delivered to the clinics.",
    "receipt.repeated": "This request had already been sent, so it was not sent again. Here is its receipt once more.",
    "receipt.reference": "Reference",
    "receipt.submitted": "Sent",
    "receipt.clinics": "Sent to",
    "receipt.next_title": "What happens next?",
    "receipt.next_1": "The request is placed in the inbox of each clinic you chose. Only they can open it.",
    "receipt.next_2": "The clinic contacts you by e-mail or phone. How soon varies from clinic to clinic.",
    "receipt.next_3": "Give the reference if you contact us or the clinic about this request.",
    "receipt.retention_title": "How long do we keep your information?",
    "receipt.retention": (
        "We keep your contact details encrypted for five months after the request is delivered, to document "
        "the forwarding and to answer you about your rights. Then they are deleted. What you wrote about "
        "your need we cannot read; it exists only encrypted for the clinics."
    ),
    "receipt.manage_title": "Your private link",
    "receipt.manage_intro": (
        "With this link you can see whether the clinics have received your request, and withdraw your consent. "
        "Keep it safe, for example as a bookmark or written down. "
        "Do not share it: anyone with the link can withdraw the request."
    ),
    "receipt.manage_once": "The link is shown only this once. We cannot send it to you again.",
    "receipt.manage_open": "Open the private link",
    # The manage page
    "manage.title": "Request",
    "manage.lead": "Here you can see where your request has got to, and withdraw your consent.",
    "manage.submitted": "Submitted",
    "manage.status_title": "Status at each clinic",
    "manage.clinic": "Clinic",
    "manage.status": "Status",
    "manage.when": "Time",
    "status.waiting": "Waiting to be delivered",
    "status.waiting_detail": "The request is stored and will be placed in the clinic's inbox shortly.",
    "status.available": "Delivered to the clinic's inbox",
    "status.available_detail": "The clinic has not collected it yet.",
    "status.acknowledged": "Received by the clinic",
    "status.acknowledged_detail": "The clinic has collected and stored the request.",
    "status.dead": "Could not be delivered",
    "status.dead_detail": "We could not deliver it. Our operators have been alerted and will try again.",
    "status.cancelled": "Stopped",
    "status.cancelled_detail": "Stopped because consent was withdrawn, before the clinic collected it.",
    "status.expired": "Expired",
    "status.expired_detail": "The clinic did not collect it before the contact details were deleted.",
    "manage.withdraw_title": "Withdraw consent",
    "manage.withdraw_intro": (
        "When you withdraw consent, everything not yet received by a clinic is stopped at once. "
        "This cannot be undone; to send after all, you will need to send a new request."
    ),
    "manage.withdraw_received_note": (
        "Clinics that have already received the request keep it. Contact them directly if you want them to delete it."
    ),
    "manage.withdraw_button": "Withdraw consent",
    "manage.withdrawn_title": "Consent has been withdrawn",
    "manage.withdrawn_at": "You withdrew your consent on {when}.",
    "manage.withdrawn_now": "We have recorded that you withdraw your consent.",
    "manage.cancelled_now": "Stopped now, before the clinic received it:",
    "manage.nothing_cancelled": "There was nothing left to stop.",
    "manage.kept_title": "Already received",
    "manage.kept": (
        "These clinics had already received the request and keep it: {clinics}. Contact them directly if you "
        "want them to delete it. When you later ask us for access, correction or erasure, we pass the request "
        "on to them."
    ),
    "manage.keep_link": "You can still use this link to see the status.",
    "manage.anonymised": "Your contact details have been deleted from our records.",
    # Error pages
    "error_page.not_found_title": "We cannot find this page",
    "error_page.not_found": (
        "The link is wrong, incomplete or old. If you copied the private link from your receipt, "
        "check that you copied all of it."
    ),
    "error_page.csrf_title": "The form could not be sent",
    "error_page.csrf": (
        "For your security, the form must be sent from this website, and the page must have been opened "
        "recently. This can also happen if your browser blocks cookies. Go back, reload the page and try again. "
        "Nothing has been stored."
    ),
    "error_page.too_many_title": "Too many requests in a short time",
    "error_page.too_many": (
        "Many requests have been sent from your connection in the last minute. Wait a minute and try again. "
        "Nothing has been stored."
    ),
    "error_page.too_large_title": "The form is too large",
    "error_page.too_large": (
        "The text you sent is too long. Go back, shorten it and try again. Nothing has been stored."
    ),
    "error_page.refused_title": "The request was not accepted",
    "error_page.refused": (
        "We could not accept this request, and nothing has been stored. If you filled in the form yourself, "
        "go back and try again."
    ),
    "error_page.generic_title": "Something went wrong on our side",
    "error_page.generic": "Nothing you sent has been stored. Please try again in a little while.",
    "error_page.incident": "Error code: {incident}",
    "error_page.back": "Back to the start",
}
