// A JAX-WS client of the bssbus services, compiled against the classes `wsimport` generates
// from the bus's ?wsdl, one package a service: bss.<service in lower case>
// (tests/e2e/clients/test_java_client.py).
//
// Usage: java BssClient PLAN.tsv
// Each plan line is "id<TAB>Service<TAB>Operation<TAB>request.xml<TAB>(unused)". The request
// wrapper element is unmarshalled with the generated JAXB classes; the call goes through the
// generated Service class (which loads the WSDL from the bus and calls the soap:address it
// names) and the generated port type's method for the operation. The answer's <Op>Result is
// printed as one JSON line {"id", "ok": true, "result": {...}} with the XML element names as
// keys, or {"id", "ok": false, "error"}.
import java.io.BufferedReader;
import java.io.File;
import java.lang.reflect.Field;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.math.BigDecimal;
import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import javax.xml.bind.JAXBContext;
import javax.xml.bind.JAXBElement;
import javax.xml.bind.annotation.XmlElement;
import javax.xml.bind.annotation.XmlElementRef;
import javax.xml.ws.RequestWrapper;

public class BssClient {

    private static final Map<String, Object> PORTS = new HashMap<>();
    private static final Map<String, JAXBContext> CONTEXTS = new HashMap<>();

    public static void main(String[] args) throws Exception {
        if (args.length != 1) {
            System.err.println("usage: java BssClient PLAN.tsv");
            System.exit(2);
        }
        try (BufferedReader plan = Files.newBufferedReader(Paths.get(args[0]), StandardCharsets.UTF_8)) {
            String line;
            while ((line = plan.readLine()) != null) {
                if (line.isEmpty()) continue;
                String[] f = line.split("\t");
                StringBuilder out = new StringBuilder("{\"id\": ").append(json(f[0]));
                try {
                    Object result = call(f[1], f[2], new File(f[3]));
                    out.append(", \"ok\": true, \"result\": ");
                    write(out, result);
                } catch (Throwable e) {
                    Throwable cause = e instanceof InvocationTargetException ? e.getCause() : e;
                    out.append(", \"ok\": false, \"error\": ").append(json(String.valueOf(cause)));
                }
                System.out.println(out.append("}"));
                System.out.flush();
            }
        }
    }

    /** Unmarshal the request wrapper, find the port type's method for it, call it. */
    static Object call(String service, String operation, File request) throws Exception {
        String pkg = "bss." + service.toLowerCase();
        JAXBContext ctx = CONTEXTS.get(pkg);
        if (ctx == null) {
            ctx = JAXBContext.newInstance(pkg, BssClient.class.getClassLoader());
            CONTEXTS.put(pkg, ctx);
        }
        Object wrapper = ctx.createUnmarshaller().unmarshal(request);
        if (wrapper instanceof JAXBElement) wrapper = ((JAXBElement<?>) wrapper).getValue();
        if (!wrapper.getClass().getSimpleName().equals(operation)) {
            throw new IllegalArgumentException(request + " holds a " + wrapper.getClass().getName());
        }
        Object port = port(pkg, service);
        for (Class<?> sei : port.getClass().getInterfaces()) {
            for (Method m : sei.getMethods()) {
                RequestWrapper rw = m.getAnnotation(RequestWrapper.class);
                if (rw != null && rw.className().equals(wrapper.getClass().getName())) {
                    Object head = wrapper.getClass().getMethod("getUNIBSSHEAD").invoke(wrapper);
                    Object body = wrapper.getClass().getMethod("getUNIBSSBODY").invoke(wrapper);
                    return m.invoke(port, head, body);
                }
            }
        }
        throw new IllegalArgumentException("no port type method for " + service + "." + operation);
    }

    /** new bss.bankpayment.BankPayment().getBankPaymentSoap11(), once a service: the SOAP 1.1 port. */
    static Object port(String pkg, String service) throws Exception {
        Object port = PORTS.get(service);
        if (port == null) {
            // JAX-WS names the service class <Service>_Service when a generated class already has
            // the service's name (TopUp: the TopUp operation's request wrapper).
            Class<?> cls;
            try {
                cls = Class.forName(pkg + "." + service + "_Service");
            } catch (ClassNotFoundException e) {
                cls = Class.forName(pkg + "." + service);
            }
            Object svc = cls.getConstructor().newInstance();
            port = svc.getClass().getMethod("get" + service + "Soap11").invoke(svc);
            PORTS.put(service, port);
        }
        return port;
    }

    /** A generated JAXB object as JSON, its fields named by their XML element names. */
    static void write(StringBuilder out, Object value) throws IllegalAccessException {
        if (value == null) {
            out.append("null");
        } else if (value instanceof JAXBElement) {
            write(out, ((JAXBElement<?>) value).getValue());
        } else if (value instanceof String) {
            out.append(json((String) value));
        } else if (value instanceof Long || value instanceof Integer || value instanceof Short
                || value instanceof BigInteger || value instanceof BigDecimal) {
            out.append(value);
        } else if (value instanceof Enum) {   // a JAXB enum: its XML value is value()
            try {
                write(out, value.getClass().getMethod("value").invoke(value));
            } catch (ReflectiveOperationException e) {
                out.append(json(((Enum<?>) value).name()));
            }
        } else if (value instanceof Boolean || value instanceof Number) {
            out.append(json(value.toString()));
        } else if (value instanceof List) {
            out.append("[");
            boolean first = true;
            for (Object item : (List<?>) value) {
                if (!first) out.append(", ");
                write(out, item);
                first = false;
            }
            out.append("]");
        } else {
            out.append("{");
            boolean first = true;
            for (Class<?> c = value.getClass(); c != null && c != Object.class; c = c.getSuperclass()) {
                for (Field field : c.getDeclaredFields()) {
                    if (Modifier.isStatic(field.getModifiers())) continue;
                    field.setAccessible(true);
                    String name = field.getName();
                    XmlElement el = field.getAnnotation(XmlElement.class);
                    XmlElementRef ref = field.getAnnotation(XmlElementRef.class);
                    if (el != null && !"##default".equals(el.name())) name = el.name();
                    else if (ref != null && !"##default".equals(ref.name())) name = ref.name();
                    if (!first) out.append(", ");
                    out.append(json(name)).append(": ");
                    write(out, field.get(value));
                    first = false;
                }
            }
            out.append("}");
        }
    }

    static String json(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char ch : s.toCharArray()) {
            switch (ch) {
                case '"': b.append("\\\""); break;
                case '\\': b.append("\\\\"); break;
                case '\n': b.append("\\n"); break;
                case '\r': b.append("\\r"); break;
                case '\t': b.append("\\t"); break;
                default:
                    if (ch < 0x20) b.append(String.format("\\u%04x", (int) ch));
                    else b.append(ch);
            }
        }
        return b.append("\"").toString();
    }
}
