"""Every text of the staff pages, in German and English: ``key -> {language: text}``.

Placeholders are ``{name}`` (``str.format``). A language without a text falls back to English, a key
without any text shows the key itself (so a typo is visible on the page, not a crash). Other pages of
the staff app (campaigns, items, subscribers) add their keys here too.
"""

from __future__ import annotations

from typing import Any

STRINGS: dict[str, dict[str, str]] = {
    # -- frame ---------------------------------------------------------------------------------------
    "app.title": {"de": "Redaktion", "en": "Editorial desk"},
    "nav.dashboard": {"de": "Übersicht", "en": "Dashboard"},
    "nav.campaigns": {"de": "Kampagnen", "en": "Campaigns"},
    "nav.items": {"de": "Beiträge", "en": "Items"},
    "nav.subscribers": {"de": "Abonnenten", "en": "Subscribers"},
    "nav.signed_in_as": {"de": "Angemeldet als {name}", "en": "Signed in as {name}"},
    "nav.logout": {"de": "Abmelden", "en": "Sign out"},
    "nav.language": {"de": "Sprache", "en": "Language"},
    "nav.language_save": {"de": "Sprache wählen", "en": "Choose language"},
    "nav.main": {"de": "Hauptnavigation", "en": "Main navigation"},
    # -- sign-in -------------------------------------------------------------------------------------
    "login.title": {"de": "Anmelden", "en": "Sign in"},
    "login.username": {"de": "Benutzername", "en": "User name"},
    "login.password": {"de": "Passwort", "en": "Password"},
    "login.submit": {"de": "Anmelden", "en": "Sign in"},
    "login.failed": {"de": "Anmeldung fehlgeschlagen", "en": "Sign-in failed"},
    "login.throttled": {
        "de": "Zu viele fehlgeschlagene Anmeldungen. Bitte in {minutes} Minuten erneut versuchen.",
        "en": "Too many failed sign-ins. Please try again in {minutes} minutes.",
    },
    "login.expired_form": {
        "de": "Das Formular war abgelaufen. Bitte erneut anmelden.",
        "en": "The form had expired. Please sign in again.",
    },
    # -- refusals ------------------------------------------------------------------------------------
    "csrf.title": {"de": "Anfrage abgelehnt", "en": "Request refused"},
    "csrf.body": {
        "de": "Das Formular war ungültig oder abgelaufen; es wurde nichts geändert. "
        "Bitte die Seite neu laden und es noch einmal versuchen.",
        "en": "The form was invalid or had expired; nothing was changed. "
        "Please reload the page and try again.",
    },
    "csrf.back": {"de": "Zur Übersicht", "en": "To the dashboard"},
    "error.service": {
        "de": "Das hat nicht geklappt. Meldung des Systems: {message}",
        "en": "That did not work. The system says: {message}",
    },
    "error.not_found": {"de": "Diese Ausgabe gibt es nicht.", "en": "There is no such edition."},
    # -- done messages (``?done=<key>`` after a POST) -----------------------------------------------
    "origin.title": {"de": "Anfrage abgelehnt", "en": "Request refused"},
    "origin.body": {
        "de": "Das Formular kam von einer anderen Adresse als der des Programms. Öffnen Sie es unter "
        "{address} und versuchen Sie es dort noch einmal.",
        "en": "The form came from another address than the app's own. Open the app at {address} and try "
        "again there.",
    },
    "done.language": {"de": "Sprache gespeichert.", "en": "Language saved."},
    "done.approved": {"de": "Ausgabe freigegeben.", "en": "Edition approved."},
    "done.released": {
        "de": "Ausgabe freigegeben; der angehaltene Lauf geht weiter.",
        "en": "Edition approved; the held run goes on.",
    },
    "done.queued": {"de": "Ausgabe zum Versand eingereiht.", "en": "Edition queued for sending."},
    "done.cancelled": {"de": "Ausgabe abgebrochen.", "en": "Edition cancelled."},
    "done.held": {
        "de": "Ausgabe zurückgehalten: Sie geht erst nach einer neuen Freigabe hinaus.",
        "en": "Edition held: it goes out only once it is approved again.",
    },
    "done.test_sent": {
        "de": "Test an Ihre Adresse verschickt.",
        "en": "A test was sent to your address.",
    },
    "done.nothing": {"de": "Nichts zu tun.", "en": "Nothing to do."},
    # -- dashboard -----------------------------------------------------------------------------------
    "dash.title": {"de": "Übersicht", "en": "Dashboard"},
    "dash.awaiting": {
        "de": "Noch nicht versandt: Entwürfe und Freigaben",
        "en": "Not sent yet: drafts and approved",
    },
    "dash.awaiting_none": {"de": "Keine Ausgabe wartet auf Freigabe.", "en": "No edition is waiting."},
    "dash.held": {"de": "Angehaltene Läufe", "en": "Held runs"},
    "dash.held_none": {"de": "Kein Lauf ist angehalten.", "en": "No run is held."},
    "dash.next_runs": {"de": "Nächste geplante Läufe", "en": "Next scheduled runs"},
    "dash.job_campaign": {"de": "Kampagne {name}", "en": "Campaign {name}"},
    "dash.job_gather": {"de": "Abruf der Quelle {name}", "en": "Gathering source {name}"},
    "dash.every": {"de": "alle {span}", "en": "every {span}"},
    "dash.by_hand": {"de": "von Hand", "en": "by hand"},
    "dash.each_new_item": {"de": "bei jeder neuen Meldung", "en": "on each new item"},
    "dash.next_runs_none": {"de": "Nichts geplant.", "en": "Nothing scheduled."},
    "dash.queue": {"de": "Versandwarteschlange", "en": "Sending queue"},
    "dash.queue_depth": {"de": "In der Warteschlange", "en": "Waiting in the queue"},
    "dash.queue_rate": {"de": "Gesendet in der letzten Stunde", "en": "Sent in the last hour"},
    "dash.queue_failed": {"de": "Fehlgeschlagen (24 h)", "en": "Failed (24 h)"},
    "dash.queue_oldest": {"de": "Älteste wartende seit", "en": "Oldest waiting since"},
    "dash.queue_stuck": {"de": "Hängende Zustellungen", "en": "Stuck deliveries"},
    "dash.sources": {"de": "Quellen", "en": "Sources"},
    "dash.sources_none": {"de": "Keine Quellen konfiguriert.", "en": "No sources configured."},
    "dash.social": {"de": "Anstehende Social-Media-Beiträge", "en": "Upcoming social posts"},
    "dash.social_none": {"de": "Keine Beiträge eingereiht.", "en": "No posts queued."},
    "dash.paused": {"de": "pausiert", "en": "paused"},
    "dash.unavailable": {
        "de": "Diese Angaben sind gerade nicht verfügbar: {message}",
        "en": "This is not available right now: {message}",
    },
    "col.edition": {"de": "Ausgabe", "en": "Edition"},
    "col.campaign": {"de": "Kampagne", "en": "Campaign"},
    "col.subject": {"de": "Betreff", "en": "Subject"},
    "col.created": {"de": "Erstellt", "en": "Created"},
    "col.state": {"de": "Stand", "en": "State"},
    "col.when": {"de": "Wann", "en": "When"},
    "col.held_since": {"de": "Angehalten seit", "en": "Held since"},
    "col.reason": {"de": "Grund", "en": "Reason"},
    "col.source": {"de": "Quelle", "en": "Source"},
    "col.last_fetch": {"de": "Zuletzt abgerufen", "en": "Last fetched"},
    "col.items": {"de": "Beiträge", "en": "Items"},
    "col.last_error": {"de": "Letzter Fehler", "en": "Last error"},
    "col.channel": {"de": "Kanal", "en": "Channel"},
    "col.posts": {"de": "Beiträge", "en": "Posts"},
    "col.next_post": {"de": "Nächster Beitrag", "en": "Next post"},
    "col.language": {"de": "Sprache", "en": "Language"},
    "col.recipients": {"de": "Empfänger", "en": "Recipients"},
    "col.count": {"de": "Anzahl", "en": "Count"},
    "col.recipient": {"de": "Empfänger", "en": "Recipient"},
    "col.reply": {"de": "Antwort des Servers", "en": "Server's reply"},
    "col.length": {"de": "Länge", "en": "Length"},
    "col.text": {"de": "Text", "en": "Text"},
    "state.ok": {"de": "in Ordnung", "en": "OK"},
    "state.error": {"de": "Fehler", "en": "error"},
    "state.warning": {"de": "Warnung", "en": "warning"},
    "state.failing": {"de": "fehlerhaft", "en": "failing"},
    "state.never gathered": {"de": "noch nie abgerufen", "en": "never gathered"},
    "state.draft": {"de": "Entwurf", "en": "draft"},
    "state.approved": {"de": "freigegeben", "en": "approved"},
    "state.approval void (content changed)": {
        "de": "Freigabe ungültig (Inhalt geändert)",
        "en": "approval void (content changed)",
    },
    "state.approval void (does not render)": {
        "de": "Freigabe ungültig (lässt sich nicht erstellen)",
        "en": "approval void (does not render)",
    },
    "state.held": {"de": "angehalten", "en": "held"},
    "state.queued": {"de": "eingereiht", "en": "queued"},
    "state.sending": {"de": "wird gesendet", "en": "sending"},
    "state.posting": {"de": "wird gepostet", "en": "posting"},
    "state.retry": {"de": "neuer Versuch", "en": "retry"},
    "state.sent": {"de": "gesendet", "en": "sent"},
    "state.failed": {"de": "fehlgeschlagen", "en": "failed"},
    "state.unknown": {"de": "unklar", "en": "unknown"},
    "state.cancelled": {"de": "abgebrochen", "en": "cancelled"},
    "state.skipped": {"de": "übersprungen", "en": "skipped"},
    "state.waiting": {"de": "wartet", "en": "waiting"},
    "state.due": {"de": "fällig", "en": "due"},
    "state.composing": {"de": "wird erstellt", "en": "composing"},
    # -- edition page --------------------------------------------------------------------------------
    "ed.title": {"de": "Ausgabe {id}", "en": "Edition {id}"},
    "ed.back": {"de": "Zurück zur Übersicht", "en": "Back to the dashboard"},
    "ed.status": {"de": "Stand", "en": "State"},
    "ed.approved_by": {"de": "Freigegeben von {name} am {when}", "en": "Approved by {name} on {when}"},
    "ed.not_approved": {"de": "Noch nicht freigegeben.", "en": "Not approved yet."},
    "ed.stale": {
        "de": "Der Inhalt hat sich seit der Freigabe geändert; bitte erneut freigeben.",
        "en": "The content changed since it was approved; please approve it again.",
    },
    "ed.preview": {"de": "Vorschau", "en": "Preview"},
    "ed.desktop": {"de": "Desktop", "en": "Desktop"},
    "ed.mobile": {"de": "Mobil", "en": "Mobile"},
    "ed.newsletter_in": {"de": "Newsletter ({language})", "en": "Newsletter ({language})"},
    "ed.subject": {"de": "Betreff", "en": "Subject"},
    "ed.text_part": {"de": "Textfassung", "en": "Text part"},
    "ed.social": {"de": "Social-Media-Beiträge", "en": "Social posts"},
    "ed.social_none": {"de": "Keine Social-Media-Beiträge.", "en": "No social posts."},
    "ed.too_long": {"de": "zu lang", "en": "too long"},
    "ed.fallbacks": {
        "de": "Ohne Übersetzung (in der Originalsprache gezeigt)",
        "en": "Fallbacks (shown in their original language)",
    },
    "ed.fallbacks_none": {"de": "Alle Beiträge sind übersetzt.", "en": "Every item is translated."},
    "ed.recipients": {"de": "Wer was bekommt", "en": "What goes to whom"},
    "ed.recipients_none": {"de": "Keine Empfänger.", "en": "No recipients."},
    "ed.actions": {"de": "Aktionen", "en": "Actions"},
    "ed.approve": {"de": "Freigeben", "en": "Approve"},
    "ed.approve_anyway": {
        "de": "Trotzdem freigeben (zu wenige neue Beiträge)",
        "en": "Approve anyway (too few new items)",
    },
    "ed.list": {"de": "Verteiler: {name}", "en": "Mailing list: {name}"},
    "ed.send": {"de": "Senden", "en": "Send"},
    "ed.send_anyway": {"de": "Trotzdem senden", "en": "Send anyway"},
    "ed.cancel": {"de": "Abbrechen", "en": "Cancel"},
    "ed.hold": {"de": "Zurückhalten", "en": "Hold"},
    "ed.hold_note": {
        "de": "Zurückhalten nimmt die Freigabe zurück; weder der Zeitplan noch „Senden“ schickt die Ausgabe, "
        "bis sie jemand wieder freigibt.",
        "en": "Holding withdraws the approval; neither the schedule nor “Send” sends the edition until "
        "someone approves it again.",
    },
    "ed.cancel_confirm": {
        "de": "Abbrechen: eingereihte Nachrichten werden nicht gesendet.",
        "en": "Cancel: queued messages will not be sent.",
    },
    "ed.test": {"de": "Test an mich senden", "en": "Send a test to me"},
    "ed.test_no_email": {
        "de": "Für Ihr Konto ist keine E-Mail-Adresse hinterlegt; ein Test ist nicht möglich.",
        "en": "Your account has no email address; a test cannot be sent.",
    },
    "ed.delivery": {"de": "Versand", "en": "Delivery"},
    "ed.delivery_none": {"de": "Noch nichts eingereiht.", "en": "Nothing queued yet."},
    "ed.failed": {"de": "Fehlgeschlagene Empfänger", "en": "Failed recipients"},
    "ed.failed_none": {"de": "Keine Fehler.", "en": "No failures."},
    "ed.unavailable": {
        "de": "Die Vorschau dieser Ausgabe kann nicht erstellt werden: {message}",
        "en": "The preview of this edition cannot be made: {message}",
    },
}


def translate(language: str, key: str, /, **values: Any) -> str:
    """``STRINGS[key]`` in ``language`` (else English, else the key), formatted with ``values``."""
    texts = STRINGS.get(key)
    if texts is None:
        return key
    text = texts.get(language) or texts.get("en") or key
    return text.format(**values) if values else text
