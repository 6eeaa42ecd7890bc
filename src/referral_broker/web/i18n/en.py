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
        "(form protection, language choice, and signing in to see your requests)."
    ),
    "site.footer_home": "Back to the start",
    # What search engines show under the public pages (a meta description: about 150 characters at most)
    "meta.home_description": (
        "Find private clinics and send one request to those you choose. It is encrypted, "
        "so only the clinics you choose can read it."
    ),
    "meta.form_description": (
        "Describe what you need help with and give consent. Your request is encrypted and sent only to the clinics "
        "you chose."
    ),
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
    "status.undeliverable": "Could not be delivered – please send it again",
    "status.undeliverable_detail": (
        "The clinic could not open this request, for example because one of its keys was withdrawn. "
        "Nobody at the clinic has read it. Send the request again if you still want help from this clinic."
    ),
    "manage.resubmit_title": "Send your request again",
    "manage.resubmit": (
        "These clinics could not receive your request: {clinics}. We have deleted the encrypted copy. "
        "Send a new request if you still want help from them."
    ),
    "manage.resubmit_link": "Send a new request",
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
    "error_page.too_slow_title": "The form took too long to arrive",
    "error_page.too_slow": (
        "Your connection sent the form so slowly that we stopped waiting for it. Nothing has been stored. "
        "Go back and try again, on a better connection if you can."
    ),
    "error_page.refused_title": "The request was not accepted",
    "error_page.refused": (
        "We could not accept this request, and nothing has been stored. If you filled in the form yourself, "
        "go back and try again."
    ),
    "error_page.unreadable_title": "The request could not be read",
    "error_page.unreadable": (
        "Something in the request was not readable text: a zero byte, a control character or broken "
        "character encoding. A browser does not send this by itself. Nothing has been stored. Go back to "
        "the start and try again."
    ),
    "error_page.generic_title": "Something went wrong on our side",
    "error_page.generic": "Nothing you sent has been stored. Please try again in a little while.",
    "error_page.incident": "Error code: {incident}",
    "error_page.back": "Back to the start",
    # The patient's rights without the manage link (/rights)
    "rights.link_home": "Lost your link? Find the requests you have sent",
    "rights.link_manage": "Find all your requests and your rights with your e-mail address or mobile number",
    "rights.link_receipt": (
        "If you lose the link, you can still find your requests with the e-mail address or mobile number you gave."
    ),
    "rights.link_receipt_action": "Find your requests",
    "rights.day_format": "{day} {month_name} {year}",
    "rights.title": "Your requests and your rights",
    "rights.lead": (
        "Lost the private link from your receipt? Here you can find the requests you have sent with your e-mail "
        "address or mobile number, and use your rights."
    ),
    "rights.what_title": "What you can do",
    "rights.right_access_title": "See and download:",
    "rights.right_access": (
        "see which clinics received your requests and when, and download everything we hold about you."
    ),
    "rights.right_correct_title": "Correct:",
    "rights.right_correct": "correct your contact details. Clinics that have received the request are told.",
    "rights.right_withdraw_title": "Withdraw consent:",
    "rights.right_withdraw": "stop everything not yet delivered. Clinics that already have it are told.",
    "rights.right_erase_title": "Erase:",
    "rights.right_erase": "we erase our copy now, and the clinics that received the request are told.",
    "rights.sealed": (
        "What you wrote about your need is encrypted to the clinics you chose. We cannot read it, so we can "
        "neither show it here nor include it in the download."
    ),
    "rights.how_title": "Get a one-time code",
    "rights.how": (
        "Write the e-mail address or the mobile number you gave in your request. We send a one-time code there; "
        "choose one of them."
    ),
    "rights.how_same": (
        "You get the same answer whether or not we have requests from that address, so no one can use this page "
        "to find out whether you have sent one."
    ),
    "rights.by_email": "Get the code by e-mail",
    "rights.by_phone": "Or get the code by text message",
    "rights.send_email_code": "Send the code by e-mail",
    "rights.send_phone_code": "Send the code by text message",
    "rights.have_link_title": "Do you have the private link?",
    "rights.have_link": "Then open it instead: it shows the request and lets you withdraw consent straight away.",
    "rights.error_title": "Something must be fixed before we can send a code",
    "rights.signed_in": "You have already confirmed your address.",
    "rights.to_requests": "See your requests",
    "rights.arrival.ended": "Your session has ended or expired. Ask for a new code to continue.",
    "rights.arrival.signed_out": "You are signed out. Nothing else has changed.",
    "rights.problem.too_many_codes_title": "Too many codes to this address",
    "rights.problem.too_many_codes": (
        "We have sent several codes to this address in the last hour. Use the newest code you received, or wait "
        "an hour and ask again."
    ),
    "rights.problem.too_many_here_title": "Too many codes asked for from your connection",
    "rights.problem.too_many_here": (
        "Many codes have been asked for from your connection in a short time. Wait ten minutes and try again."
    ),
    "rights.problem.not_sent_title": "The code could not be sent",
    "rights.problem.not_sent": (
        "We could not send the code just now. Nothing has been lost: try again in a little while, or choose the "
        "other way to get the code."
    ),
    "rights.problem.not_linked_title": "We cannot find that request",
    "rights.problem.not_linked": (
        "No request with that reference is linked to the address you confirmed. It may have been erased already."
    ),
    "rights.code_title": "Enter the code",
    "rights.code_sent.email": (
        "We have sent a one-time code to the e-mail address you wrote. It is valid for {minutes} minutes."
    ),
    "rights.code_sent.phone": (
        "We have sent a one-time code by text message to the number you wrote. It is valid for {minutes} minutes."
    ),
    "rights.code_same": (
        "If you have sent requests with this address, you will see them when you have entered the code."
    ),
    "rights.code_label": "One-time code",
    "rights.code_hint": "6 digits",
    "rights.code_submit": "Continue",
    "rights.new_code": "Ask for a new code",
    "rights.code_help": (
        "No code? Check your spam folder, and check that you wrote the address correctly. "
        "After five wrong tries, or when the code is too old, you must ask for a new one."
    ),
    "rights.code_refused_title": "The code was not accepted",
    "rights.code_refused": (
        "The code is wrong or no longer valid. Check the digits and try again, or ask for a new code."
    ),
    "rights.code_empty_title": "Write the code",
    "rights.code_empty": "Write the code we sent you",
    "rights.requests_title": "Your requests",
    "rights.requests_lead.email": "These are the requests sent with the e-mail address you confirmed.",
    "rights.requests_lead.phone": "These are the requests sent with the mobile number you confirmed.",
    "rights.session_until": "You can use this page until {when}.",
    "rights.sign_out": "Sign out",
    "rights.none": (
        "We found no requests linked to this address. Requests that have been erased or anonymised are not shown. "
        "If you used another e-mail address or mobile number, ask for a code to that one."
    ),
    "rights.export_title": "Download everything we hold about you",
    "rights.export_intro": (
        "A file (JSON) with your contact details, the clinics, the times, the state of each delivery, your "
        "consent and the notices sent to clinics, for all the requests below."
    ),
    "rights.export_button": "Download (JSON)",
    "rights.consent": "Consent",
    "rights.consent_given": "Given",
    "rights.withdrawn_on": "Withdrawn on {day}",
    "rights.anonymised_on_label": "Contact details deleted",
    "rights.anonymised_on": "At the latest {day}",
    "rights.contact_unreadable": "We could not read our copy of your contact details.",
    "rights.notices_title": "Notices sent to the clinics",
    "rights.notice_line": "{clinic}: {kind}, {when}",
    "rights.notice_kind.correction": "corrected contact details",
    "rights.notice_kind.erasure": "erasure",
    "rights.notice_kind.withdrawal": "consent withdrawn",
    "rights.notice_status.waiting": "waiting for the clinic to collect it",
    "rights.notice_status.acknowledged": "received by the clinic",
    "rights.notice_status.expired": "expired",
    "rights.actions_title": "What do you want to do?",
    "rights.correct_button": "Correct contact details",
    "rights.erase_button": "Erase now",
    "rights.cancel": "Cancel",
    "rights.correct_title": "Correct your contact details",
    "rights.correct_lead": "Change what is wrong and press “Save the corrections”.",
    "rights.correct_told": "These clinics will get your corrected details: {clinics}.",
    "rights.correct_none_told": "No clinic has the request any longer, so no clinic needs to be told.",
    "rights.correct_address_warning": (
        "If you change the e-mail address or mobile number you confirmed with the code, the request will no longer "
        "be shown here. To see it again, ask for a code to the new address."
    ),
    "rights.correct_submit": "Save the corrections",
    "rights.correct_error_title": "Something must be fixed before the corrections can be saved",
    "rights.correct_error_intro": "Nothing has been changed yet. Please fix:",
    "rights.confirm_sent": "Sent on {day} to {clinics}.",
    "rights.confirm.withdraw_title": "Withdraw consent?",
    "rights.confirm_withdraw_what": (
        "When you withdraw consent, everything not yet received by a clinic is stopped at once."
    ),
    "rights.confirm.withdraw_final": "This cannot be undone. To send after all, you will need to send a new request.",
    "rights.confirm.withdraw_button": "Yes, withdraw consent",
    "rights.confirm_told.withdraw": (
        "These clinics have, or may have collected, the request and are told that you withdrew consent: {clinics}."
    ),
    "rights.confirm.erase_title": "Erase the request now?",
    "rights.confirm_erase_what": (
        "We delete your contact details, the reference and everything else that links the request to you, at once. "
        "Anything not yet delivered is stopped."
    ),
    "rights.confirm_erase_remains_title": "What we keep",
    "rights.confirm_erase_remains": (
        "Only what the law requires us to be able to show: that a request for {clinics} was received on {day} "
        "and erased on {today}, with no person in it."
    ),
    "rights.confirm.erase_final": (
        "This cannot be undone. Afterwards the request is no longer shown here, and the private link stops working."
    ),
    "rights.confirm.erase_button": "Yes, erase now",
    "rights.confirm_stopped": "Stopped at once, before the clinic receives it: {clinics}.",
    "rights.confirm_told.erase": (
        "These clinics already have, or may have collected, the request and are told: {clinics}. They must erase "
        "their copy, unless they are obliged to keep it (for example a duty to keep health records)."
    ),
    "rights.done.corrected_title": "Your contact details have been corrected",
    "rights.done.corrected": "Request {reference} now has the details you saved.",
    "rights.done.unchanged_title": "Nothing was changed",
    "rights.done.unchanged": "The details you saved were the same as before for request {reference}.",
    "rights.done.withdrawn_title": "Consent has been withdrawn",
    "rights.done.withdrawn": "We have recorded that you withdraw your consent to request {reference}.",
    "rights.done.erased_title": "The request has been erased",
    "rights.done.erased": (
        "Request {reference} has been erased. All we keep is that a request was received and erased, with no "
        "person in it."
    ),
    "rights.done.changed": "Changed: {fields}.",
    "rights.done.stopped": "Stopped before the clinic received it: {clinics}.",
    "rights.done_told.corrected": "These clinics are given your corrected details: {clinics}.",
    "rights.done_told.withdrawn": "These clinics are told that you withdrew consent: {clinics}.",
    "rights.done_told.erased": (
        "These clinics are told, and must erase their copy unless they are obliged to keep it: {clinics}."
    ),
    "rights.done.not_linked_now": (
        "You changed the address you confirmed, so the request is no longer shown here. To see it again, ask for a "
        "code to the new address."
    ),
}
