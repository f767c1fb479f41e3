using System.Diagnostics;
using System.IO.Compression;
using System.Xml.Linq;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Packaging;

/// <summary>
/// What a user of the packages gets: <c>dotnet tool install</c> of Qed.Tool gives a working <c>qed</c>, and a fresh
/// project that adds the Qed package builds and runs the library sample. The packages come from <c>dotnet pack</c> of
/// this checkout (see <see cref="PackedPackages"/>); nothing is fetched from the network.
/// </summary>
public sealed class PackageTests(PackedPackages packages) : IClassFixture<PackedPackages>
{
    private static void Log(string line) => TestContext.Current.TestOutputHelper?.WriteLine(line);

    [Fact]
    public void The_library_package_carries_its_metadata_docs_and_readme()
    {
        var nuspec = Nuspec(packages.LibraryPackage, out var entries);
        Assert.Equal("Qed", Meta(nuspec, "id"));
        Assert.Equal(packages.Version, Meta(nuspec, "version"));
        Assert.Matches(@"^\d+\.\d+\.\d+$", packages.Version);
        Assert.Equal("MIT", Meta(nuspec, "license"));
        Assert.Equal("expression", nuspec.Descendants().Single(e => e.Name.LocalName == "license").Attribute("type")?.Value);
        Assert.Equal("README.md", Meta(nuspec, "readme"));
        Assert.Contains("qed", Meta(nuspec, "tags").Split(' '));
        Assert.False(string.IsNullOrWhiteSpace(Meta(nuspec, "description")));
        Assert.False(string.IsNullOrWhiteSpace(Meta(nuspec, "authors")));
        var repository = nuspec.Descendants().Single(e => e.Name.LocalName == "repository");
        Assert.Equal("git", repository.Attribute("type")?.Value);
        if (GitHead() is { } head)
        {
            Assert.Equal(head, repository.Attribute("commit")?.Value);
        }
        Assert.Contains("README.md", entries);
        Assert.Contains("lib/net10.0/Qed.dll", entries);
        Assert.Contains("lib/net10.0/Qed.xml", entries);
        // The library alone: no CLI inside.
        Assert.DoesNotContain(entries, e => e.Contains("Qed.Cli", StringComparison.Ordinal));
    }

    [Fact]
    public void The_tool_package_is_a_dotnet_tool_named_qed()
    {
        var nuspec = Nuspec(packages.ToolPackage, out var entries);
        Assert.Equal("Qed.Tool", Meta(nuspec, "id"));
        Assert.Equal(packages.Version, Meta(nuspec, "version"));
        Assert.Equal("MIT", Meta(nuspec, "license"));
        Assert.Equal("DotnetTool", nuspec.Descendants().Single(e => e.Name.LocalName == "packageType").Attribute("name")?.Value);
        using var zip = ZipFile.OpenRead(packages.ToolPackage);
        string settingsPath = entries.Single(e => e.EndsWith("/DotnetToolSettings.xml", StringComparison.Ordinal));
        using var settings = zip.GetEntry(settingsPath)!.Open();
        var command = XDocument.Load(settings).Descendants("Command").Single();
        Assert.Equal("qed", command.Attribute("Name")?.Value);
        Assert.Equal("Qed.Cli.dll", command.Attribute("EntryPoint")?.Value);
    }

    [Fact]
    public void The_installed_tool_prints_its_version_and_creates_an_image()
    {
        Log($"dotnet pack of both packages: {packages.PackTime.TotalSeconds:F1} s");
        string work = packages.NewDirectory("tool");
        string toolPath = Path.Combine(work, "bin");
        var clock = Stopwatch.StartNew();
        Dotnet.Ok(work, packages.InstallEnvironment(), "tool", "install", "--tool-path", toolPath, "--add-source", packages.Source,
            "--configfile", packages.NuGetConfig, "Qed.Tool", "--version", packages.Version);
        Log($"dotnet tool install: {clock.Elapsed.TotalSeconds:F1} s");
        string qed = Path.Combine(toolPath, "qed");
        Assert.True(File.Exists(qed), $"no {qed} after the install");

        var version = Run(work, qed, "--version");
        // The same line as the build under test prints: the package's version and this checkout's commit.
        Assert.Equal(Qed.Cli.Program.VersionLine + "\n", version.StdOut);
        Assert.StartsWith($"qed version {packages.Version}", version.StdOut, StringComparison.Ordinal);
        if (GitHead() is { } head)
        {
            Assert.Equal($"qed version {packages.Version} (commit {head[..7]})\n", version.StdOut);
        }

        Run(work, qed, "create", "-f", "qed", "x.qed", "1G");
        var info = Run(work, qed, "info", "x.qed");
        Assert.Contains("file format: qed\n", info.StdOut, StringComparison.Ordinal);
        Assert.Contains("virtual size: 1 GiB (1073741824 bytes)\n", info.StdOut, StringComparison.Ordinal);
        // The oracle agrees that the installed tool made a valid image of that size.
        var qemu = Tools.QemuImg(work, "info", "--output=json", "x.qed");
        Assert.Contains("\"virtual-size\": 1073741824", qemu.StdOut, StringComparison.Ordinal);
        Assert.Contains("\"format\": \"qed\"", qemu.StdOut, StringComparison.Ordinal);
    }

    [Fact]
    public void A_fresh_project_adds_the_library_package_and_runs_the_sample()
    {
        string work = packages.NewDirectory("consumer");
        // A project as `dotnet new console` makes it, plus warnings as errors; its code is the sample's.
        File.WriteAllText(Path.Combine(work, "Consumer.csproj"),
            """
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                <OutputType>Exe</OutputType>
                <TargetFramework>net10.0</TargetFramework>
                <ImplicitUsings>enable</ImplicitUsings>
                <Nullable>enable</Nullable>
                <TreatWarningsAsErrors>true</TreatWarningsAsErrors>
              </PropertyGroup>
            </Project>
            """);
        File.Copy(Path.Combine(packages.RepositoryRoot, "samples", "QedSample", "Program.cs"), Path.Combine(work, "Program.cs"));
        File.Copy(packages.NuGetConfig, Path.Combine(work, "nuget.config"));
        var environment = packages.InstallEnvironment();
        var clock = Stopwatch.StartNew();
        Dotnet.Ok(work, environment, "add", "package", "Qed", "--version", packages.Version);
        Assert.Contains($"Include=\"Qed\" Version=\"{packages.Version}\"", File.ReadAllText(Path.Combine(work, "Consumer.csproj")), StringComparison.Ordinal);
        Dotnet.Ok(work, environment, "build", "-c", "Release", "-o", "out", "--nologo", "-v", "quiet", "--disable-build-servers");
        Log($"dotnet add package + build: {clock.Elapsed.TotalSeconds:F1} s");
        // Built against the package, not the repository: the package's Qed.dll is the one next to the program.
        Assert.True(File.Exists(Path.Combine(packages.PackagesFolder, "qed", packages.Version, "lib", "net10.0", "Qed.dll")));

        var run = Dotnet.Ok(work, null, Path.Combine(work, "out", "Consumer.dll"), "sample.qed");
        Assert.Contains("read back what was written", run.StdOut, StringComparison.Ordinal);
        Assert.Contains("0 corruptions, 0 leaks", run.StdOut, StringComparison.Ordinal);
        Assert.Equal(0, Tools.QemuImgRaw(work, "check", "sample.qed").ExitCode);
    }

    private static ToolResult Run(string work, string program, params string[] arguments) =>
        Dotnet.Expect(Dotnet.Run(program, arguments, work), $"{program} {string.Join(' ', arguments)}");

    private static XDocument Nuspec(string package, out List<string> entries)
    {
        using var zip = ZipFile.OpenRead(package);
        entries = zip.Entries.Select(e => e.FullName).ToList();
        var nuspec = zip.Entries.Single(e => e.FullName.EndsWith(".nuspec", StringComparison.Ordinal) && !e.FullName.Contains('/', StringComparison.Ordinal));
        using var stream = nuspec.Open();
        return XDocument.Load(stream);
    }

    private static string Meta(XDocument nuspec, string name) =>
        nuspec.Descendants().Single(e => e.Name.LocalName == "metadata").Elements().Single(e => e.Name.LocalName == name).Value;

    /// <summary>The checkout's commit, or null where git cannot tell (a tarball): then the package carries none.</summary>
    private string? GitHead()
    {
        if (!Path.Exists(Path.Combine(packages.RepositoryRoot, ".git")))
        {
            return null;
        }
        try
        {
            var result = Dotnet.Run("git", ["rev-parse", "HEAD"], packages.RepositoryRoot);
            return result.ExitCode == 0 ? result.StdOut.Trim() : null;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return null;
        }
    }
}
