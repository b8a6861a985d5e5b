// mailet-mta webmail: small progressive behaviour. Every page works without it.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  // "Select all" in a message list.
  document.querySelectorAll("input.select-all").forEach(function (box) {
    box.addEventListener("change", function () {
      var form = box.closest("form");
      form.querySelectorAll('input[name="uid"]').forEach(function (one) {
        one.checked = box.checked;
      });
    });
  });
  // Ask before deleting.
  document.querySelectorAll("button.delete").forEach(function (button) {
    button.addEventListener("click", function (event) {
      if (!window.confirm("Delete the selected messages?")) {
        event.preventDefault();
      }
    });
  });
  // "/" moves to the search field, as in most mail programs.
  document.addEventListener("keydown", function (event) {
    var target = event.target;
    var typing = target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" ||
                            target.tagName === "SELECT");
    if (event.key === "/" && !typing) {
      var search = document.getElementById("q");
      if (search) {
        event.preventDefault();
        search.focus();
      }
    }
  });
});
