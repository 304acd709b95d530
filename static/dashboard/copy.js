// The keys page: copies the new key to the clipboard (the key is also selectable by hand).
document.addEventListener("DOMContentLoaded", function () {
  var button = document.getElementById("copy-key");
  if (!button) return;
  button.addEventListener("click", function () {
    var text = document.getElementById(button.dataset.target).textContent.trim();
    navigator.clipboard.writeText(text).then(
      function () { button.textContent = "Copied"; },
      function () { button.textContent = "Select and copy by hand"; }
    );
  });
});
