// Where recsvc answers HTTP (RECSVC_HTTP_PORT) and a token with the `public` scope only.
// Everyone who opens the page can read this token: that is what the public scope is for (it
// can ask for recommendations and report views, clicks and impressions, nothing else). Never
// put a token with another scope in a web page. The page's origin must be listed in the
// server's RECSVC_CORS_ORIGINS.
window.RECSVC = {
  url: "http://localhost:8080",
  publicToken: "REPLACE-WITH-A-PUBLIC-TOKEN",
  customerId: "C0000001", // your shop's id of the signed-in customer (or a visitor id)
};
