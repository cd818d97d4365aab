<?php
// A PHP SoapClient (ext/soap, WSDL mode) of the bssbus services
// (tests/e2e/clients/test_php_client.py).
//
// Usage: php bss_client.php BUS_URL PLAN.tsv
// Each plan line is "id<TAB>Service<TAB>Operation<TAB>request.json<TAB>(unused)"; request.json
// holds the request wrapper's children (UNI_BSS_HEAD, UNI_BSS_BODY) as in wsdl/examples/.
// SoapClient loads BUS_URL/ws/<Service>?wsdl (and its ?xsd= imports) and posts to the
// soap:address the WSDL names. SoapClient has no port selection: each operation is bound to the
// first port that has it, <Service>Soap11 (listed before <Service>Soap12), and 'soap_version'
// => SOAP_1_1 makes the envelope SOAP 1.1. One JSON line per call: {"id", "ok": true, "result"}
// or {"id", "ok": false, "error"}.

if ($argc !== 3) {
    fwrite(STDERR, "usage: php bss_client.php BUS_URL PLAN.tsv\n");
    exit(2);
}
[$_, $bus, $planFile] = $argv;
ini_set('default_socket_timeout', '30');
$clients = [];

foreach (file($planFile, FILE_IGNORE_NEW_LINES | FILE_SKIP_EMPTY_LINES) as $line) {
    [$id, $service, $operation, $requestFile] = explode("\t", $line);
    try {
        if (!isset($clients[$service])) {
            $clients[$service] = new SoapClient("$bus/ws/$service?wsdl", [
                'soap_version' => SOAP_1_1,
                'cache_wsdl' => WSDL_CACHE_NONE,
                'exceptions' => true,
                'trace' => true,
                'encoding' => 'UTF-8',
                'features' => SOAP_SINGLE_ELEMENT_ARRAYS,
                'connection_timeout' => 10,
            ]);
        }
        $args = json_decode(file_get_contents($requestFile), true, 64, JSON_THROW_ON_ERROR);
        $answer = $clients[$service]->__soapCall($operation, [$args]);
        $resultName = $operation . 'Result';
        $out = ['id' => $id, 'ok' => true, 'result' => $answer->$resultName];
    } catch (Throwable $e) {
        $why = get_class($e) . ': ' . $e->getMessage();
        if ($e instanceof SoapFault && isset($clients[$service])) {
            $why .= ' | response: ' . $clients[$service]->__getLastResponse();
        }
        $out = ['id' => $id, 'ok' => false, 'error' => $why];
    }
    echo json_encode($out, JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES | JSON_INVALID_UTF8_SUBSTITUTE), "\n";
}
