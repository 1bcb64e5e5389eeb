// The files page's uploads: drop (or choose) files; each is sent in chunks of
// data-chunk bytes (one request each, written at its offset by the server), so
// no request, proxy or server process holds a whole file. The total is asked
// of the server first: an upload over the storage allowance is refused, with
// the numbers, before a byte is sent.
(function () {
  "use strict";
  var zone = document.getElementById("dropzone");
  if (!zone) { return; }
  var input = document.getElementById("file-input");
  var bar = document.getElementById("upload-progress");
  var label = document.getElementById("upload-name");
  var error = document.getElementById("upload-error");
  var chunkSize = parseInt(zone.dataset.chunk, 10);

  function csrf() {
    var m = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    if (m) { return decodeURIComponent(m[1]); }
    var field = document.querySelector("input[name=csrfmiddlewaretoken]");
    return field ? field.value : "";
  }

  function fail(message) {
    error.textContent = message;
    error.hidden = false;
    zone.classList.remove("busy");
  }

  function detail(xhr) {
    try { return JSON.parse(xhr.responseText).detail; } catch (e) { return xhr.status + " " + xhr.statusText; }
  }

  function send(url, body, onProgress) {
    return new Promise(function (resolve, reject) {
      var xhr = new XMLHttpRequest();
      xhr.open("POST", url);
      xhr.setRequestHeader("X-CSRFToken", csrf());
      if (onProgress) { xhr.upload.onprogress = function (e) { onProgress(e.loaded); }; }
      xhr.onload = function () { (xhr.status === 200 ? resolve : reject)(xhr); };
      xhr.onerror = function () { reject(xhr); };
      xhr.send(body);
    });
  }

  async function uploadAll(files) {
    error.hidden = true;
    if (!files.length) { return; }
    var total = 0;
    for (var i = 0; i < files.length; i++) { total += files[i].size; }
    var form = new FormData();
    form.append("bytes", String(total));
    zone.classList.add("busy");
    try {
      await send(zone.dataset.checkUrl, form);
    } catch (xhr) {
      return fail(detail(xhr));
    }
    bar.hidden = false;
    bar.value = 0;
    var done = 0;
    for (var f = 0; f < files.length; f++) {
      var file = files[f];
      label.textContent = file.name + " (" + (f + 1) + "/" + files.length + ")";
      var offset = 0;
      do {
        var piece = file.slice(offset, offset + chunkSize);
        var url = zone.dataset.uploadUrl + "?" + new URLSearchParams({
          folder: zone.dataset.folder, name: file.name, offset: String(offset), total: String(file.size)
        });
        var base = done + offset;
        try {
          await send(url, piece, function (loaded) {
            bar.value = total ? Math.floor(100 * (base + loaded) / total) : 100;
          });
        } catch (xhr) {
          return fail(zone.dataset.msgFailed + " " + file.name + ": " + detail(xhr));
        }
        offset += piece.size;
      } while (offset < file.size);
      done += file.size;
      bar.value = total ? Math.floor(100 * done / total) : 100;
    }
    label.textContent = zone.dataset.msgDone;
    zone.classList.remove("busy");
    window.location.reload();
  }

  ["dragenter", "dragover"].forEach(function (name) {
    zone.addEventListener(name, function (e) { e.preventDefault(); zone.classList.add("over"); });
  });
  zone.addEventListener("dragleave", function () { zone.classList.remove("over"); });
  zone.addEventListener("drop", function (e) {
    e.preventDefault();
    zone.classList.remove("over");
    uploadAll(Array.prototype.slice.call(e.dataTransfer.files));
  });
  input.addEventListener("change", function () { uploadAll(Array.prototype.slice.call(input.files)); });
})();
