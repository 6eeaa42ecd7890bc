"""Every text of the patient pages in Norwegian bokmål (the default language). Keys match `en.py` exactly."""

from __future__ import annotations

MESSAGES: dict[str, str] = {
    # The frame around every page
    "site.name": "Henvisningsformidleren",
    "site.tagline": "Send en henvendelse trygt og kryptert til private klinikker",
    "site.skip": "Gå til innholdet",
    "site.language_switch": "English",
    "site.language_switch_label": "Read this page in English",
    "site.footer_privacy": (
        "Opplysningene dine sendes kryptert, og bare til klinikkene du velger. "
        "Vi bruker ingen sporing, ingen analyseverktøy og bare de informasjonskapslene siden trenger for å virke "
        "(skjemabeskyttelse, språkvalg og innlogging når du ser henvendelsene dine)."
    ),
    "site.footer_home": "Til forsiden",
    # What search engines show under the public pages (a meta description: about 150 characters at most)
    "meta.home_description": (
        "Finn private klinikker og send én henvendelse til de du velger. Den krypteres, "
        "så bare klinikkene du velger kan lese den."
    ),
    "meta.form_description": (
        "Beskriv hva du trenger hjelp med og gi samtykke. Henvendelsen krypteres og sendes bare til klinikkene "
        "du valgte."
    ),
    # Months for dates written out
    "date.format": "{day:02d}.{month:02d}.{year} kl. {hour:02d}:{minute:02d}",
    "date.months": "januar,februar,mars,april,mai,juni,juli,august,september,oktober,november,desember",
    # The clinic finder
    "home.title": "Finn en klinikk",
    "home.intro": (
        "Velg én eller flere klinikker, og fyll så ut ett skjema. Henvendelsen krypteres før den lagres, "
        "slik at bare klinikkene du velger kan lese den."
    ),
    "home.steps": "Steg 1 av 2: velg klinikker",
    "home.filter_legend": "Avgrens listen",
    "home.filter_category": "Hva trenger du hjelp med?",
    "home.filter_city": "By",
    "home.filter_any_category": "Alle fagområder",
    "home.filter_any_city": "Alle byer",
    "home.filter_submit": "Vis klinikker",
    "home.filter_clear": "Vis alle klinikker",
    "home.count": "{count} klinikker passer",
    "home.count_one": "1 klinikk passer",
    "home.none": "Ingen klinikker passer valget ditt. Prøv et annet fagområde eller en annen by.",
    "home.no_clinics": "Det er ingen klinikker å velge ennå. Prøv igjen senere.",
    "home.choose_legend": "Velg klinikkene du vil sende til",
    "home.choose_hint": "Du kan velge flere. Du ser navnene igjen før du gir samtykke.",
    "home.treats": "Behandler",
    "home.city": "Sted",
    "home.continue": "Gå videre til skjemaet",
    "home.error_title": "Du må velge noe før du kan gå videre",
    "home.choose_error": "Velg minst én klinikk",
    "home.unknown_clinic": "En av klinikkene du valgte kan ikke ta imot henvendelser nå. Velg på nytt.",
    # The form
    "form.title": "Send henvendelse",
    "form.steps": "Steg 2 av 2: fyll ut og gi samtykke",
    "form.chosen": "Du sender til",
    "form.change_clinics": "Endre valg av klinikker",
    "form.required_note": "Alle felt må fylles ut, unntatt der det står «valgfritt».",
    "form.need_legend": "Hva gjelder henvendelsen?",
    "form.category": "Fagområde (valgfritt)",
    "form.category_none": "Velg fagområde",
    "form.description": "Beskriv hva du trenger hjelp med",
    "form.description_hint": "Skriv med egne ord. Bare klinikkene du har valgt kan lese dette.",
    "form.about_legend": "Om deg",
    "form.name": "Fullt navn",
    "form.email": "E-postadresse",
    "form.email_hint": "For eksempel kari@eksempel.no",
    "form.phone": "Mobilnummer",
    "form.phone_hint": "For eksempel 412 34 567. Utenlandske numre skrives med landskode, som +46.",
    "form.birth_date": "Fødselsdato",
    "form.birth_date_hint": "dd.mm.åååå, for eksempel 17.05.1990",
    "form.consent_legend": "Samtykke",
    "form.consent_intro": "Les dette før du krysser av:",
    "form.consent_clinics": "Klinikkene du har valgt, og som får henvendelsen:",
    "form.consent_withdraw": (
        "Slik trekker du samtykket: Etter innsending får du en kvittering med en privat lenke. "
        "Åpne lenken og trykk «Trekk tilbake samtykket». Alt som ikke er levert ennå, stanses med en gang."
    ),
    "form.consent_version": "Samtykketekst, versjon {version}",
    "form.consent_checkbox": "Jeg har lest teksten over og samtykker til at henvendelsen sendes til {clinics}.",
    "form.honeypot": "Ikke fyll ut dette feltet",
    "form.submit": "Send henvendelsen",
    "form.error_title": "Noe må rettes før henvendelsen kan sendes",
    "form.error_intro": "Ingenting er lagret ennå. Rett opp dette:",
    "form.error_prefix": "Feil:",
    "form.and": "og",
    # Messages next to fields
    "error.clinics.required": "Velg minst én klinikk",
    "error.clinics.duplicate": "Hver klinikk kan bare velges én gang",
    "error.clinics.unknown": "En av klinikkene finnes ikke lenger. Gå tilbake og velg på nytt.",
    "error.clinics.unavailable": "En av klinikkene kan ikke ta imot henvendelser nå. Gå tilbake og velg på nytt.",
    "error.clinics.invalid": "Velg klinikkene fra listen",
    "error.category.unknown": "Velg et fagområde fra listen",
    "error.category.invalid": "Velg et fagområde fra listen",
    "error.description.required": "Beskriv hva du trenger hjelp med",
    "error.description.invalid": "Beskrivelsen er for lang. Skriv kortere (høyst 10 000 tegn).",
    "error.name.required": "Skriv det fulle navnet ditt",
    "error.name.invalid": "Skriv det fulle navnet ditt (høyst 200 tegn)",
    "error.email.required": "Skriv e-postadressen din",
    "error.email.invalid": "Skriv en gyldig e-postadresse, for eksempel kari@eksempel.no",
    "error.phone.required": "Skriv mobilnummeret ditt",
    "error.phone.invalid": "Skriv et gyldig telefonnummer, for eksempel 412 34 567 eller +47 412 34 567",
    "error.birth_date.required": "Skriv fødselsdatoen din",
    "error.birth_date.format": "Skriv fødselsdatoen som dd.mm.åååå, for eksempel 17.05.1990",
    "error.birth_date.invalid": "Denne fødselsdatoen er ikke mulig. Sjekk dag, måned og år.",
    "error.birth_date.too_young": (
        "Du må være minst {minimum_age} år for å sende en henvendelse selv. "
        "Be en forelder eller foresatt sende den for deg."
    ),
    "error.consent.required": "Du må krysse av for samtykke for å sende henvendelsen",
    "error.consent.outdated": "Samtykketeksten er endret. Les den nye teksten og kryss av på nytt.",
    "error.consent.invalid": "Du må krysse av for samtykke for å sende henvendelsen",
    "error.generic": "Sjekk dette feltet",
    # The receipt
    "receipt.title": "Henvendelsen er sendt",
    "receipt.lead": "Takk. Henvendelsen er kryptert og lagret, og blir nå levert til klinikkene.",
    "receipt.repeated": (
        "Denne henvendelsen var allerede sendt, så den ble ikke sendt på nytt. Her er kvitteringen igjen."
    ),
    "receipt.reference": "Referanse",
    "receipt.submitted": "Sendt",
    "receipt.clinics": "Sendt til",
    "receipt.next_title": "Hva skjer nå?",
    "receipt.next_1": "Henvendelsen legges i innboksen til hver klinikk du valgte. Bare de kan åpne den.",
    "receipt.next_2": (
        "Klinikken tar kontakt med deg på e-post eller telefon. Hvor raskt varierer fra klinikk til klinikk."
    ),
    "receipt.next_3": "Oppgi referansen hvis du kontakter oss eller klinikken om denne henvendelsen.",
    "receipt.retention_title": "Hvor lenge lagrer vi opplysningene?",
    "receipt.retention": (
        "Vi lagrer kontaktopplysningene dine kryptert i fem måneder etter at henvendelsen er levert, "
        "for å kunne dokumentere formidlingen og svare deg om rettighetene dine. Deretter slettes de. "
        "Hva du skrev om behovet ditt kan vi ikke lese; det finnes bare kryptert til klinikkene."
    ),
    "receipt.manage_title": "Din private lenke",
    "receipt.manage_intro": (
        "Med denne lenken kan du se om klinikkene har mottatt henvendelsen, og trekke tilbake samtykket. "
        "Ta vare på den, for eksempel ved å lagre den som bokmerke eller skrive den ned. "
        "Ikke del den: alle som har lenken kan trekke henvendelsen tilbake."
    ),
    "receipt.manage_once": "Lenken vises bare denne ene gangen. Vi kan ikke sende den til deg på nytt.",
    "receipt.manage_open": "Åpne den private lenken",
    # The manage page
    "manage.title": "Henvendelse",
    "manage.lead": "Her ser du hvor henvendelsen din er, og du kan trekke tilbake samtykket.",
    "manage.submitted": "Sendt inn",
    "manage.status_title": "Status hos hver klinikk",
    "manage.clinic": "Klinikk",
    "manage.status": "Status",
    "manage.when": "Tidspunkt",
    "status.waiting": "Venter på å bli levert",
    "status.waiting_detail": "Henvendelsen er lagret og blir lagt i klinikkens innboks om kort tid.",
    "status.available": "Levert til klinikkens innboks",
    "status.available_detail": "Klinikken har ikke hentet den ennå.",
    "status.acknowledged": "Mottatt av klinikken",
    "status.acknowledged_detail": "Klinikken har hentet og lagret henvendelsen.",
    "status.dead": "Kunne ikke leveres",
    "status.dead_detail": "Vi klarte ikke å levere den. Driftspersonalet vårt er varslet og prøver igjen.",
    "status.cancelled": "Stanset",
    "status.cancelled_detail": "Stanset fordi samtykket ble trukket tilbake, før klinikken hentet den.",
    "status.expired": "Utløpt",
    "status.expired_detail": "Klinikken hentet den ikke før kontaktopplysningene ble slettet.",
    "status.undeliverable": "Kunne ikke leveres – send på nytt",
    "status.undeliverable_detail": (
        "Klinikken kunne ikke åpne denne forespørselen, for eksempel fordi en av nøklene dens er trukket "
        "tilbake. Ingen ved klinikken har lest den. Send forespørselen på nytt hvis du fortsatt ønsker hjelp derfra."
    ),
    "manage.resubmit_title": "Send forespørselen på nytt",
    "manage.resubmit": (
        "Disse klinikkene kunne ikke motta forespørselen din: {clinics}. Vi har slettet den krypterte kopien. "
        "Send en ny forespørsel hvis du fortsatt ønsker hjelp derfra."
    ),
    "manage.resubmit_link": "Send en ny forespørsel",
    "manage.withdraw_title": "Trekk tilbake samtykket",
    "manage.withdraw_intro": (
        "Når du trekker tilbake samtykket, stanses alt som ikke er mottatt av en klinikk ennå, med en gang. "
        "Det kan ikke angres; vil du likevel sende, må du sende en ny henvendelse."
    ),
    "manage.withdraw_received_note": (
        "Klinikker som allerede har mottatt henvendelsen beholder den. Ta kontakt med dem direkte hvis du vil "
        "at de skal slette den."
    ),
    "manage.withdraw_button": "Trekk tilbake samtykket",
    "manage.withdrawn_title": "Samtykket er trukket tilbake",
    "manage.withdrawn_at": "Du trakk tilbake samtykket {when}.",
    "manage.withdrawn_now": "Vi har registrert at du trekker tilbake samtykket.",
    "manage.cancelled_now": "Stanset nå, før klinikken mottok den:",
    "manage.nothing_cancelled": "Det var ingenting igjen å stanse.",
    "manage.kept_title": "Allerede mottatt",
    "manage.kept": (
        "Disse klinikkene hadde allerede mottatt henvendelsen og beholder den: {clinics}. "
        "Kontakt dem direkte hvis du vil at de skal slette den. Når du senere ber oss om innsyn, retting "
        "eller sletting, sender vi beskjed videre til dem."
    ),
    "manage.keep_link": "Du kan fortsatt bruke denne lenken til å se status.",
    "manage.anonymised": "Kontaktopplysningene dine er slettet hos oss.",
    # Error pages
    "error_page.not_found_title": "Vi finner ikke denne siden",
    "error_page.not_found": (
        "Lenken er feil, ufullstendig eller gammel. Hvis du kopierte den private lenken fra kvitteringen, "
        "sjekk at du fikk med hele lenken."
    ),
    "error_page.csrf_title": "Skjemaet kunne ikke sendes",
    "error_page.csrf": (
        "Av sikkerhetshensyn må skjemaet sendes fra denne nettsiden, og siden må ha vært åpnet nylig. "
        "Det kan også skje hvis nettleseren blokkerer informasjonskapsler. Gå tilbake, last inn siden på nytt "
        "og prøv igjen. Ingenting er lagret."
    ),
    "error_page.too_many_title": "For mange henvendelser på kort tid",
    "error_page.too_many": (
        "Det er sendt mange henvendelser fra din forbindelse det siste minuttet. Vent et minutt og prøv igjen. "
        "Ingenting er lagret."
    ),
    "error_page.too_large_title": "Skjemaet er for stort",
    "error_page.too_large": (
        "Teksten du sendte er for lang. Gå tilbake, skriv kortere og prøv igjen. Ingenting er lagret."
    ),
    "error_page.too_slow_title": "Skjemaet brukte for lang tid",
    "error_page.too_slow": (
        "Forbindelsen din sendte skjemaet så sakte at vi sluttet å vente på det. Ingenting er lagret. "
        "Gå tilbake og prøv igjen, helst med en bedre forbindelse."
    ),
    "error_page.refused_title": "Henvendelsen ble ikke tatt imot",
    "error_page.refused": (
        "Vi kunne ikke ta imot denne henvendelsen, og ingenting er lagret. Hvis du fylte ut skjemaet selv, "
        "gå tilbake og prøv igjen."
    ),
    "error_page.unreadable_title": "Henvendelsen kunne ikke leses",
    "error_page.unreadable": (
        "Noe i henvendelsen var ikke lesbar tekst: en nullbyte, et kontrolltegn eller ødelagt "
        "tegnkoding. En nettleser sender ikke dette av seg selv. Ingenting er lagret. Gå tilbake til "
        "forsiden og prøv igjen."
    ),
    "error_page.generic_title": "Noe gikk galt hos oss",
    "error_page.generic": "Ingenting av det du sendte er lagret. Prøv igjen om litt.",
    "error_page.incident": "Feilkode: {incident}",
    "error_page.back": "Til forsiden",
    # Pasientens rettigheter uten den private lenken (/rights)
    "rights.link_home": "Mistet lenken? Finn henvendelsene du har sendt",
    "rights.link_manage": "Finn alle henvendelsene og rettighetene dine med e-postadressen eller mobilnummeret ditt",
    "rights.link_receipt": (
        "Mister du lenken, kan du likevel finne henvendelsene dine med e-postadressen eller mobilnummeret du oppga."
    ),
    "rights.link_receipt_action": "Finn henvendelsene dine",
    "rights.day_format": "{day}. {month_name} {year}",
    "rights.title": "Dine henvendelser og rettigheter",
    "rights.lead": (
        "Har du mistet den private lenken fra kvitteringen? Her kan du finne henvendelsene du har sendt med "
        "e-postadressen eller mobilnummeret ditt, og bruke rettighetene dine."
    ),
    "rights.what_title": "Dette kan du gjøre",
    "rights.right_access_title": "Se og laste ned:",
    "rights.right_access": (
        "se hvilke klinikker som har fått henvendelsene dine og når, og laste ned alt vi har om deg."
    ),
    "rights.right_correct_title": "Rette:",
    "rights.right_correct": "rette kontaktopplysningene dine. Klinikker som har fått henvendelsen, får beskjed.",
    "rights.right_withdraw_title": "Trekke tilbake samtykket:",
    "rights.right_withdraw": "stanse alt som ikke er levert ennå. Klinikker som allerede har den, får beskjed.",
    "rights.right_erase_title": "Slette:",
    "rights.right_erase": "vi sletter kopien vår nå, og klinikkene som har fått henvendelsen, får beskjed.",
    "rights.sealed": (
        "Det du skrev om hva du trenger hjelp til, er kryptert til klinikkene du valgte. Vi kan ikke lese det, "
        "og kan derfor verken vise det her eller ta det med i nedlastingen."
    ),
    "rights.how_title": "Få en engangskode",
    "rights.how": (
        "Skriv e-postadressen eller mobilnummeret du oppga i henvendelsen. Vi sender en engangskode dit; "
        "velg en av dem."
    ),
    "rights.how_same": (
        "Du får det samme svaret enten vi har henvendelser fra den adressen eller ikke, så ingen kan bruke denne "
        "siden til å finne ut om du har sendt en."
    ),
    "rights.by_email": "Få koden på e-post",
    "rights.by_phone": "Eller få koden på SMS",
    "rights.send_email_code": "Send koden på e-post",
    "rights.send_phone_code": "Send koden på SMS",
    "rights.have_link_title": "Har du den private lenken?",
    "rights.have_link": "Åpne den i stedet: den viser henvendelsen, og du kan trekke tilbake samtykket med en gang.",
    "rights.error_title": "Noe må rettes før vi kan sende en kode",
    "rights.signed_in": "Du har allerede bekreftet adressen din.",
    "rights.to_requests": "Se henvendelsene dine",
    "rights.arrival.ended": "Økten din er avsluttet eller utløpt. Be om en ny kode for å fortsette.",
    "rights.arrival.signed_out": "Du er logget ut. Ingenting annet er endret.",
    "rights.problem.too_many_codes_title": "For mange koder til denne adressen",
    "rights.problem.too_many_codes": (
        "Vi har sendt flere koder til denne adressen den siste timen. Bruk den nyeste koden du fikk, eller vent "
        "en time og be om en ny."
    ),
    "rights.problem.too_many_here_title": "For mange koder bestilt fra din forbindelse",
    "rights.problem.too_many_here": (
        "Det er bedt om mange koder fra din forbindelse på kort tid. Vent ti minutter og prøv igjen."
    ),
    "rights.problem.not_sent_title": "Koden kunne ikke sendes",
    "rights.problem.not_sent": (
        "Vi fikk ikke sendt koden akkurat nå. Ingenting er tapt: prøv igjen om litt, eller velg den andre måten å "
        "få koden på."
    ),
    "rights.problem.not_linked_title": "Vi finner ikke den henvendelsen",
    "rights.problem.not_linked": (
        "Ingen henvendelse med den referansen er knyttet til adressen du bekreftet. Den kan allerede være slettet."
    ),
    "rights.code_title": "Skriv inn koden",
    "rights.code_sent.email": (
        "Vi har sendt en engangskode til e-postadressen du skrev. Den gjelder i {minutes} minutter."
    ),
    "rights.code_sent.phone": (
        "Vi har sendt en engangskode på SMS til nummeret du skrev. Den gjelder i {minutes} minutter."
    ),
    "rights.code_same": "Har du sendt henvendelser med denne adressen, ser du dem når du har skrevet inn koden.",
    "rights.code_label": "Engangskode",
    "rights.code_hint": "6 sifre",
    "rights.code_submit": "Fortsett",
    "rights.new_code": "Be om en ny kode",
    "rights.code_help": (
        "Ingen kode? Se i søppelpostmappen, og sjekk at du skrev adressen riktig. "
        "Etter fem feil forsøk, eller når koden er for gammel, må du be om en ny."
    ),
    "rights.code_refused_title": "Koden ble ikke godtatt",
    "rights.code_refused": (
        "Koden er feil eller ikke lenger gyldig. Sjekk sifrene og prøv igjen, eller be om en ny kode."
    ),
    "rights.code_empty_title": "Skriv inn koden",
    "rights.code_empty": "Skriv koden vi sendte deg",
    "rights.requests_title": "Dine henvendelser",
    "rights.requests_lead.email": "Dette er henvendelsene som er sendt med e-postadressen du bekreftet.",
    "rights.requests_lead.phone": "Dette er henvendelsene som er sendt med mobilnummeret du bekreftet.",
    "rights.session_until": "Du kan bruke denne siden til {when}.",
    "rights.sign_out": "Logg ut",
    "rights.none": (
        "Vi fant ingen henvendelser knyttet til denne adressen. Henvendelser som er slettet eller anonymisert, vises "
        "ikke. Brukte du en annen e-postadresse eller et annet mobilnummer, kan du be om en kode til den."
    ),
    "rights.export_title": "Last ned alt vi har om deg",
    "rights.export_intro": (
        "En fil (JSON) med kontaktopplysningene dine, klinikkene, tidspunktene, status for hver levering, samtykket "
        "ditt og beskjedene til klinikkene, for alle henvendelsene nedenfor."
    ),
    "rights.export_button": "Last ned (JSON)",
    "rights.consent": "Samtykke",
    "rights.consent_given": "Gitt",
    "rights.withdrawn_on": "Trukket tilbake {day}",
    "rights.anonymised_on_label": "Kontaktopplysningene slettes",
    "rights.anonymised_on": "Senest {day}",
    "rights.contact_unreadable": "Vi kunne ikke lese kopien vår av kontaktopplysningene dine.",
    "rights.notices_title": "Beskjeder sendt til klinikkene",
    "rights.notice_line": "{clinic}: {kind}, {when}",
    "rights.notice_kind.correction": "rettede kontaktopplysninger",
    "rights.notice_kind.erasure": "sletting",
    "rights.notice_kind.withdrawal": "samtykket trukket tilbake",
    "rights.notice_status.waiting": "venter på at klinikken henter den",
    "rights.notice_status.acknowledged": "mottatt av klinikken",
    "rights.notice_status.expired": "utløpt",
    "rights.actions_title": "Hva vil du gjøre?",
    "rights.correct_button": "Rett kontaktopplysninger",
    "rights.erase_button": "Slett nå",
    "rights.cancel": "Avbryt",
    "rights.correct_title": "Rett kontaktopplysningene dine",
    "rights.correct_lead": "Endre det som er feil, og trykk «Lagre rettingene».",
    "rights.correct_told": "Disse klinikkene får de rettede opplysningene: {clinics}.",
    "rights.correct_none_told": "Ingen klinikk har henvendelsen lenger, så ingen klinikk trenger beskjed.",
    "rights.correct_address_warning": (
        "Endrer du e-postadressen eller mobilnummeret du bekreftet med koden, vises ikke henvendelsen her lenger. "
        "For å se den igjen må du be om en kode til den nye adressen."
    ),
    "rights.correct_submit": "Lagre rettingene",
    "rights.correct_error_title": "Noe må rettes før endringene kan lagres",
    "rights.correct_error_intro": "Ingenting er endret ennå. Rett dette:",
    "rights.confirm_sent": "Sendt {day} til {clinics}.",
    "rights.confirm.withdraw_title": "Trekke tilbake samtykket?",
    "rights.confirm_withdraw_what": (
        "Når du trekker tilbake samtykket, stanses alt som ingen klinikk har mottatt ennå, med en gang."
    ),
    "rights.confirm.withdraw_final": "Dette kan ikke angres. Vil du likevel sende, må du sende en ny henvendelse.",
    "rights.confirm.withdraw_button": "Ja, trekk tilbake samtykket",
    "rights.confirm_told.withdraw": (
        "Disse klinikkene har, eller kan ha hentet, henvendelsen og får beskjed om at du trakk tilbake samtykket: "
        "{clinics}."
    ),
    "rights.confirm.erase_title": "Slette henvendelsen nå?",
    "rights.confirm_erase_what": (
        "Vi sletter kontaktopplysningene dine, referansen og alt annet som knytter henvendelsen til deg, med en gang. "
        "Det som ikke er levert ennå, stanses."
    ),
    "rights.confirm_erase_remains_title": "Dette beholder vi",
    "rights.confirm_erase_remains": (
        "Bare det loven krever at vi kan vise: at en henvendelse til {clinics} ble mottatt {day} og slettet "
        "{today}, uten noen person i den."
    ),
    "rights.confirm.erase_final": (
        "Dette kan ikke angres. Etterpå vises ikke henvendelsen her lenger, og den private lenken slutter å virke."
    ),
    "rights.confirm.erase_button": "Ja, slett nå",
    "rights.confirm_stopped": "Stanses med en gang, før klinikken mottar den: {clinics}.",
    "rights.confirm_told.erase": (
        "Disse klinikkene har allerede, eller kan ha hentet, henvendelsen og får beskjed: {clinics}. De må slette "
        "sin kopi, med mindre de har plikt til å beholde den (for eksempel journalføringsplikt)."
    ),
    "rights.done.corrected_title": "Kontaktopplysningene dine er rettet",
    "rights.done.corrected": "Henvendelse {reference} har nå opplysningene du lagret.",
    "rights.done.unchanged_title": "Ingenting ble endret",
    "rights.done.unchanged": "Opplysningene du lagret, var de samme som før for henvendelse {reference}.",
    "rights.done.withdrawn_title": "Samtykket er trukket tilbake",
    "rights.done.withdrawn": "Vi har registrert at du trekker tilbake samtykket til henvendelse {reference}.",
    "rights.done.erased_title": "Henvendelsen er slettet",
    "rights.done.erased": (
        "Henvendelse {reference} er slettet. Det eneste vi beholder, er at en henvendelse ble mottatt og "
        "slettet, uten noen person i den."
    ),
    "rights.done.changed": "Endret: {fields}.",
    "rights.done.stopped": "Stanset før klinikken mottok den: {clinics}.",
    "rights.done_told.corrected": "Disse klinikkene får de rettede opplysningene: {clinics}.",
    "rights.done_told.withdrawn": "Disse klinikkene får beskjed om at du trakk tilbake samtykket: {clinics}.",
    "rights.done_told.erased": (
        "Disse klinikkene får beskjed, og må slette sin kopi med mindre de har plikt til å beholde den: {clinics}."
    ),
    "rights.done.not_linked_now": (
        "Du endret adressen du bekreftet, så henvendelsen vises ikke her lenger. For å se den igjen må du be om en "
        "kode til den nye adressen."
    ),
}
