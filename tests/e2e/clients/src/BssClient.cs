// A .NET client (Mono's `wsdl` proxies, System.Web.Services) of the bssbus services, compiled
// with the proxy classes that `wsdl -namespace:Bss.<Service>` generates from the bus's ?wsdl
// (tests/e2e/clients/test_dotnet_client.py).
//
// Usage: mono BssClient.exe PLAN.tsv
// Each plan line is "id<TAB>Service<TAB>Operation<TAB>request.xml<TAB>response.xml". The
// children of the request wrapper element are read with XmlSerializer into the generated
// parameter types, the generated proxy's method for the operation (the one whose
// SoapDocumentMethod request element is the operation's) is called at the Url the WSDL names,
// and its <Op>Result is written with XmlSerializer to response.xml. One JSON line per call on
// stdout: {"id", "ok", "rsp_code", "sender"} read from the generated classes, or
// {"id", "ok": false, "error"}.
using System;
using System.IO;
using System.Reflection;
using System.Text;
using System.Web.Services.Protocols;
using System.Xml;
using System.Xml.Serialization;

public static class BssClient
{
    public static int Main(string[] args)
    {
        if (args.Length != 1)
        {
            Console.Error.WriteLine("usage: mono BssClient.exe PLAN.tsv");
            return 2;
        }
        var stdout = new StreamWriter(Console.OpenStandardOutput(), new UTF8Encoding(false));
        stdout.AutoFlush = true;
        foreach (string line in File.ReadAllLines(args[0], Encoding.UTF8))
        {
            if (line.Length == 0) continue;
            string[] f = line.Split('\t');
            string id = f[0], service = f[1], operation = f[2], request = f[3], response = f[4];
            try
            {
                object head = Call(service, operation, request, response);
                object rsp = Member(head, "RESPONSE");
                stdout.WriteLine("{\"id\": " + Json(id) + ", \"ok\": true, \"rsp_code\": "
                                 + Json(rsp == null ? null : (string)Member(rsp, "RSP_CODE"))
                                 + ", \"sender\": " + Json((string)Member(head, "MSG_SENDER")) + "}");
            }
            catch (Exception e)
            {
                Exception cause = e is TargetInvocationException && e.InnerException != null ? e.InnerException : e;
                stdout.WriteLine("{\"id\": " + Json(id) + ", \"ok\": false, \"error\": " + Json(cause.ToString()) + "}");
            }
        }
        return 0;
    }

    // Call Service.Operation with the parameters read from the request wrapper; write the
    // result to `response`; return the result's UNI_BSS_HEAD.
    static object Call(string service, string operation, string request, string response)
    {
        string ns = "http://ws.chinaunicom.cn/" + service + "/unibssBody";
        Type proxyType = Type.GetType("Bss." + service + "." + service, true);
        var proxy = (SoapHttpClientProtocol)Activator.CreateInstance(proxyType);
        proxy.Timeout = 30000;
        MethodInfo method = OperationMethod(proxyType, operation);
        if (method == null) throw new ArgumentException(service + " proxy has no method for " + operation);

        var doc = new XmlDocument();
        doc.Load(request);
        ParameterInfo[] ps = method.GetParameters();
        var values = new object[ps.Length];
        for (int i = 0; i < ps.Length; i++)
        {
            XmlElement child = null;
            foreach (XmlNode node in doc.DocumentElement.ChildNodes)
                if (node is XmlElement && node.LocalName == ps[i].Name) child = (XmlElement)node;
            if (child == null) throw new ArgumentException(request + " has no " + ps[i].Name);
            var root = new XmlRootAttribute(child.LocalName) { Namespace = child.NamespaceURI };
            values[i] = new XmlSerializer(ps[i].ParameterType, root).Deserialize(new XmlNodeReader(child));
        }
        object result = method.Invoke(proxy, values);
        if (result == null) throw new InvalidOperationException("no " + operation + "Result in the answer");

        var writer = new XmlSerializer(method.ReturnType, new XmlRootAttribute(operation + "Result") { Namespace = ns });
        using (var file = new StreamWriter(response, false, new UTF8Encoding(false)))
            writer.Serialize(file, result);
        object head = Member(result, "UNI_BSS_HEAD");
        if (head == null) throw new InvalidOperationException("no UNI_BSS_HEAD in the answer");
        return head;
    }

    // The proxy's method of an operation: the one whose request element (SoapDocumentMethod's
    // RequestElementName, else the method's name) is the operation's wrapper element. wsdl names
    // the method after the operation, unless a member cannot take that name: the TopUp operation
    // of the TopUp proxy class is CallTopUp, with RequestElementName="TopUp".
    static MethodInfo OperationMethod(Type proxyType, string operation)
    {
        foreach (MethodInfo m in proxyType.GetMethods(BindingFlags.Public | BindingFlags.Instance))
        {
            object[] attrs = m.GetCustomAttributes(typeof(SoapDocumentMethodAttribute), false);
            if (attrs.Length == 0) continue;
            string element = ((SoapDocumentMethodAttribute)attrs[0]).RequestElementName;
            if ((string.IsNullOrEmpty(element) ? m.Name : element) == operation) return m;
        }
        return null;
    }

    // A generated property (or field) by name.
    static object Member(object obj, string name)
    {
        PropertyInfo p = obj.GetType().GetProperty(name);
        if (p != null) return p.GetValue(obj, null);
        FieldInfo fi = obj.GetType().GetField(name);
        if (fi != null) return fi.GetValue(obj);
        throw new MissingMemberException(obj.GetType().Name, name);
    }

    static string Json(string s)
    {
        if (s == null) return "null";
        var b = new StringBuilder("\"");
        foreach (char c in s)
        {
            switch (c)
            {
                case '"': b.Append("\\\""); break;
                case '\\': b.Append("\\\\"); break;
                case '\n': b.Append("\\n"); break;
                case '\r': b.Append("\\r"); break;
                case '\t': b.Append("\\t"); break;
                default:
                    if (c < 0x20) b.AppendFormat("\\u{0:x4}", (int)c);
                    else b.Append(c);
                    break;
            }
        }
        return b.Append('"').ToString();
    }
}
