package dev.shear.systest.nbd;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import dev.shear.systest.tools.Json;
import dev.shear.systest.tools.QemuImg;
import dev.shear.systest.tools.QemuIo;
import dev.shear.systest.tools.RequiresTools;
import dev.shear.systest.tools.ShearProcess;
import dev.shear.systest.tools.Tool;
import dev.shear.systest.tools.ToolResult;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * TLS with the real clients: certificates made by openssl in QEMU's tls-creds-x509 directory layout
 * (CA, server certificate for localhost, client certificate, all in one directory that serves both
 * ends); libnbd ({@code nbds+unix://...&tls-certificates=DIR}) and QEMU ({@code --object
 * tls-creds-x509,...,endpoint=client}) read the export; a plaintext client is refused.
 */
@RequiresTools({"openssl", "qemu-img", "qemu-io", "nbdinfo", "nbdcopy"})
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class NbdTlsInteropTest {
    @TempDir
    Path dir;

    private Path certs;
    private Path image;
    private Path reference;
    private ShearProcess server;

    @BeforeEach
    void setUp() throws IOException {
        certs = Files.createDirectories(dir.resolve("pki"));
        Tool ssl = Tool.named("openssl").withWorkDir(certs);
        Files.writeString(certs.resolve("server.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n");
        ssl.check("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=shear-test-ca",
                "-keyout", "ca-key.pem", "-out", "ca-cert.pem");
        ssl.check("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "server-key.pem",
                "-out", "server.csr");
        ssl.check("x509", "-req", "-in", "server.csr", "-CA", "ca-cert.pem", "-CAkey", "ca-key.pem",
                "-CAcreateserial", "-days", "2", "-extfile", "server.ext", "-out", "server-cert.pem");
        ssl.check("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=client", "-keyout", "client-key.pem",
                "-out", "client.csr");
        ssl.check("x509", "-req", "-in", "client.csr", "-CA", "ca-cert.pem", "-CAkey", "ca-key.pem",
                "-CAcreateserial", "-days", "2", "-out", "client-cert.pem");

        image = dir.resolve("disk.qcow2");
        new QemuImg().create(image, "qcow2", 4L << 20);
        new QemuIo().run(image, "qcow2", List.of(QemuIo.write(0x7a, 65536, 200_000)));
        reference = dir.resolve("disk.raw");
        new QemuImg().convertToRaw(image, "qcow2", reference);
    }

    @AfterEach
    void stop() {
        if (server != null) {
            server.close();
        }
    }

    private Path socket() {
        return dir.resolve("tls.sock");
    }

    private String tlsUri() {
        return "nbds+unix:///disk?socket=" + socket() + "&tls-certificates=" + certs;
    }

    @Test
    void libnbdClientsShouldReadOverTlsAndPlaintextShouldBeRefused() throws IOException {
        server = ShearProcess.serve(socket(), "disk", image, "-r", "--tls-creds", certs.toString());
        assertTrue(server.uri().startsWith("nbds+unix://"), server.uri());
        JsonNode info = Json.parse(Tool.named("nbdinfo").check("--json", tlsUri()).stdout(), "nbdinfo tls");
        assertTrue(info.get("TLS").asBoolean(), info.toString());
        assertEquals(4L << 20, info.get("exports").get(0).get("export-size").asLong());
        Path out = dir.resolve("out.raw");
        Tool.named("nbdcopy").check(tlsUri(), out.toString());
        assertArrayEquals(Files.readAllBytes(reference), Files.readAllBytes(out));

        ToolResult plain = Tool.named("nbdinfo").run("nbd+unix:///disk?socket=" + socket());
        assertNotEquals(0, plain.exitCode(), "a plaintext client must be refused: " + plain);
        assertTrue(server.isAlive(), "the server keeps serving after refusing a plaintext client");
        assertEquals(0, Tool.named("nbdinfo").run("--can=connect", tlsUri()).exitCode(), server.stderr());
    }

    @Test
    void qemuClientsShouldReadOverTlsWithVerifyPeer() throws IOException {
        server = ShearProcess.serve(socket(), "disk", image, "-r",
                "--object", "tls-creds-x509,id=tls0,dir=" + certs + ",endpoint=server,verify-peer=on",
                "--tls-creds", "tls0");
        String object = "tls-creds-x509,id=tls0,dir=" + certs + ",endpoint=client";
        String opts = "driver=nbd,path=" + socket() + ",export=disk,tls-creds=tls0,tls-hostname=localhost";
        Tool qemuImg = Tool.named("qemu-img");
        JsonNode info = Json.parse(qemuImg.check("info", "--output=json", "--object", object, "--image-opts",
                opts).stdout(), "qemu-img info over TLS");
        assertEquals(4L << 20, info.get("virtual-size").asLong(), info.toString());
        Path out = dir.resolve("out.raw");
        qemuImg.check("convert", "--object", object, "--image-opts", opts, "-O", "raw", out.toString());
        assertArrayEquals(Files.readAllBytes(reference), Files.readAllBytes(out));

        // verify-peer=on: a client without a certificate of this CA is refused.
        Path noClientCert = Files.createDirectories(dir.resolve("ca-only"));
        Files.copy(certs.resolve("ca-cert.pem"), noClientCert.resolve("ca-cert.pem"));
        ToolResult anonymous = Tool.named("nbdinfo").run("nbds+unix:///disk?socket=" + socket()
                + "&tls-certificates=" + noClientCert);
        assertNotEquals(0, anonymous.exitCode(), "no client certificate with verify-peer=on: " + anonymous);
    }
}
