// The docs page: Swagger UI on p2pay-http's own OpenAPI document, served
// from this daemon (nothing is fetched from elsewhere).
window.addEventListener('load', function () {
  window.ui = SwaggerUIBundle({
    url: '/api/v1/openapi.json',
    dom_id: '#swagger-ui',
    deepLinking: true,
    validatorUrl: null,
    withCredentials: true
  });
});
