// A gSOAP client of the bssbus services, built from the code that `wsdl2h -Nbss` + `soapcpp2`
// (default settings otherwise) generate from the bus's ?wsdl
// (tests/e2e/clients/test_gsoap_client.py).
//
// Usage: bss_client PLAN.tsv
// Each plan line is "id<TAB>Service<TAB>Operation<TAB>request.xml<TAB>response.xml". The request
// wrapper element is read with the generated deserializer (soap_read__nsN__Op), sent as SOAP 1.1
// with the generated stub of the service's SOAP 1.1 binding (soap_call___bssK__Op, to the
// endpoint written in the WSDL), and the answer's <Op>Result is written with the generated
// serializer to response.xml. One JSON line per call on stdout: {"id", "ok", "rsp_code",
// "sender"} read through the generated classes, or {"id", "ok": false, "error"}.
//
// wsdl2h numbers the namespaces in the order it reads them (ns1 BankPayment's body, ns2 the header,
// ns3 the shared simple types, ns4 OrderSync's body, ...), and with -Nbss it makes one service of
// each binding, numbered in the order it reads them: bss (BankPaymentSoap11Binding), bss2
// (BankPaymentSoap12Binding), bss3 (OrderSyncSoap11Binding), bss4, ... The test reads both
// numberings from the generated header into bss_operations.h: one line
// OPERATION(nsN, bssK, Service, Op) for every operation of every contract, nsN the prefix of the
// service's body namespace and bssK the service of its SOAP 1.1 binding, so this client calls
// any operation of any contract a plan names, through the SOAP 1.1 bindings' stubs only.
//
// The SOAP 1.2 bindings make wsdl2h import soap12.h, so the generated namespace tables (*.nsmap)
// name the SOAP 1.2 envelope: the client runs on a copy of the table that names the SOAP 1.1
// envelope and encoding instead (soap_set_version() does not last: soap_end() drops the context's
// copy of the table).
#include "soapH.h"
#include "BankPaymentSoap11Binding.nsmap"

#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

static std::string json_str(const std::string *s) {
    if (s == NULL) return "null";
    std::string out = "\"";
    for (unsigned char c : *s) {
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            default:
                if (c < 0x20) { char buf[8]; snprintf(buf, sizeof buf, "\\u%04x", c); out += buf; }
                else out += (char)c;
        }
    }
    return out + "\"";
}

// The generated namespace table with the SOAP 1.1 envelope and encoding (entries 0 and 1).
static std::vector<struct Namespace> soap11_namespaces() {
    std::vector<struct Namespace> table;
    for (const struct Namespace *ns = namespaces; ns->id != NULL; ++ns) table.push_back(*ns);
    table.push_back(Namespace());   // the table ends with an all-NULL entry
    table[0].ns = "http://schemas.xmlsoap.org/soap/envelope/";
    table[1].ns = "http://schemas.xmlsoap.org/soap/encoding/";
    return table;
}

static std::string soap_error(struct soap *soap) {
    std::ostringstream msg;
    soap_stream_fault(soap, msg);
    return msg.str();
}

static void fail(const std::string &id, const std::string &why) {
    std::cout << "{\"id\": " << json_str(&id) << ", \"ok\": false, \"error\": " << json_str(&why) << "}"
              << std::endl;
}

// One operation: read the request, call, check the typed answer, write <Op>Result.
#define OPERATION(NS, BINDING, SERVICE, OP)                                                           \
    if (key == #SERVICE "." #OP) {                                                                    \
        _##NS##__##OP req;                                                                            \
        _##NS##__##OP##Response resp;                                                                 \
        std::ifstream in(request_file.c_str());                                                       \
        soap->is = &in;                                                                               \
        if (soap_read__##NS##__##OP(soap, &req) != SOAP_OK) {                                         \
            fail(id, "cannot read " + request_file + ": " + soap_error(soap));                        \
            soap->is = NULL; continue;                                                                \
        }                                                                                             \
        soap->is = NULL;                                                                              \
        if (soap_call___##BINDING##__##OP(soap, NULL, NULL, &req, resp) != SOAP_OK) {                 \
            fail(id, soap_error(soap)); continue;                                                     \
        }                                                                                             \
        NS##__##OP##Result *result = resp.OP##Result;                                                 \
        if (result == NULL || result->ns2__UNI_USCOREBSS_USCOREHEAD == NULL) {                        \
            fail(id, "no " #OP "Result/UNI_BSS_HEAD in the answer"); continue;                        \
        }                                                                                             \
        ns2__UniBssHead *head = result->ns2__UNI_USCOREBSS_USCOREHEAD;                                \
        std::ofstream out(response_file.c_str());                                                     \
        soap->os = &out;                                                                              \
        int written = soap_write_##NS##__##OP##Result(soap, result);                                  \
        soap->os = NULL;                                                                              \
        out.close();                                                                                  \
        if (written != SOAP_OK) { fail(id, "cannot write the answer: " + soap_error(soap)); continue; } \
        std::cout << "{\"id\": " << json_str(&id) << ", \"ok\": true, \"rsp_code\": "                 \
                  << json_str(head->RESPONSE ? &head->RESPONSE->RSP_USCORECODE : NULL)                \
                  << ", \"sender\": " << json_str(head->MSG_USCORESENDER) << "}" << std::endl;        \
        continue;                                                                                     \
    }

int main(int argc, char **argv) {
    if (argc != 2) {
        std::cerr << "usage: bss_client PLAN.tsv" << std::endl;
        return 2;
    }
    std::ifstream plan(argv[1]);
    if (!plan) {
        std::cerr << "cannot open " << argv[1] << std::endl;
        return 2;
    }
    struct soap *soap = soap_new1(SOAP_C_UTFSTRING);   // std::string members hold UTF-8
    std::vector<struct Namespace> soap11 = soap11_namespaces();
    soap_set_namespaces(soap, soap11.data());          // SOAP 1.1 envelopes (see the top)
    soap->connect_timeout = 10;
    soap->recv_timeout = 30;
    soap->send_timeout = 30;
    std::string line;
    while (std::getline(plan, line)) {
        if (line.empty()) continue;
        std::vector<std::string> f;
        std::istringstream fields(line);
        std::string part;
        while (std::getline(fields, part, '\t')) f.push_back(part);
        if (f.size() != 5) { fail(line, "bad plan line"); continue; }
        const std::string &id = f[0], key = f[1] + "." + f[2], &request_file = f[3], &response_file = f[4];
        soap_destroy(soap);
        soap_end(soap);
#include "bss_operations.h"   // OPERATION(nsN, bssK, Service, Op) for every operation (see the top)
        fail(id, "this client has no operation " + key);
    }
    soap_destroy(soap);
    soap_end(soap);
    soap_free(soap);
    return 0;
}
