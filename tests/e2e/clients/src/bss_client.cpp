// A gSOAP client of the four bssbus services, built from the code that `wsdl2h` + `soapcpp2`
// (default settings) generate from the bus's ?wsdl (tests/e2e/clients/test_gsoap_client.py).
//
// Usage: bss_client PLAN.tsv
// Each plan line is "id<TAB>Service<TAB>Operation<TAB>request.xml<TAB>response.xml". The request
// wrapper element is read with the generated deserializer (soap_read__nsN__Op), sent with the
// generated stub (soap_call___nsN__Op, to the endpoint written in the WSDL), and the answer's
// <Op>Result is written with the generated serializer to response.xml. One JSON line per call
// on stdout: {"id", "ok", "rsp_code", "sender"} read through the generated classes, or
// {"id", "ok": false, "error"}.
//
// wsdl2h numbers the namespaces in the order it reads them: it is given BankPayment, OrderSync,
// CardActivation, AccountSync, so their bodies are ns1, ns4, ns5, ns6 (ns2 the header, ns3 the
// shared simple types).
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
#define OPERATION(NS, SERVICE, OP)                                                                    \
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
        if (soap_call___##NS##__##OP(soap, NULL, NULL, &req, resp) != SOAP_OK) {                      \
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
        OPERATION(ns1, BankPayment, QueryArrears)
        OPERATION(ns1, BankPayment, QueryBalance)
        OPERATION(ns1, BankPayment, Pay)
        OPERATION(ns1, BankPayment, Reverse)
        OPERATION(ns4, OrderSync, SyncOrder)
        OPERATION(ns4, OrderSync, QueryOrderStatus)
        OPERATION(ns5, CardActivation, ActivateCards)
        OPERATION(ns5, CardActivation, QueryCardStatus)
        OPERATION(ns6, AccountSync, SyncThreeAccount)
        fail(id, "this client has no operation " + key);
    }
    soap_destroy(soap);
    soap_end(soap);
    soap_free(soap);
    return 0;
}
