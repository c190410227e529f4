require ["fileinto", "mailbox"];
if header :contains "List-Id" "announce.example.net" {
  fileinto :create "Lists";
}
