"""The IMAP intake: a mailbox on hosted mail, its messages faxed as if they came by SMTP.

- envelope: what stands for the SMTP envelope (sender, recipients) in a delivered message;
- taking: one message through the listener's rules into the store, exactly once;
- replies: the reply to a refused message, through the relay;
- session: one IMAP connection (imaplib, TLS, XOAUTH2, IDLE);
- watcher: the thread that watches the mailbox, and its start and stop.
"""
