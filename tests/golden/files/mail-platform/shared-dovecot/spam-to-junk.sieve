# Files mail that rspamd marked as spam into Junk before the user's own script runs.
require ["fileinto", "mailbox"];
if header :contains "X-Spam" "Yes" {
  fileinto :create "Junk";
  stop;
}
