// Command protocfilter runs a protoc plugin on part of a code generation request: it keeps the
// files of one proto package (-only) and drops the rest, so that buf.gen.yaml can give the Go
// plugins the weft.v1 API without the other inputs (gRPC health, reflection) that the TypeScript
// plugin needs. A request left with no file gets an empty response without running the plugin.
//
//	protocfilter -only=weft.v1 go tool protoc-gen-go
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/pluginpb"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "protocfilter:", err)
		os.Exit(1)
	}
}

func run() error {
	only := flag.String("only", "", "proto package whose files are generated")
	flag.Parse()
	if *only == "" || flag.NArg() == 0 {
		return fmt.Errorf("usage: protocfilter -only=<package> <plugin command...>")
	}
	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		return err
	}
	req := &pluginpb.CodeGeneratorRequest{}
	if err := proto.Unmarshal(in, req); err != nil {
		return fmt.Errorf("reading the request: %w", err)
	}
	packages := map[string]string{}
	for _, f := range req.GetProtoFile() {
		packages[f.GetName()] = f.GetPackage()
	}
	var kept []string
	for _, name := range req.GetFileToGenerate() {
		if packages[name] == *only {
			kept = append(kept, name)
		}
	}
	if len(kept) == 0 {
		features := uint64(pluginpb.CodeGeneratorResponse_FEATURE_PROTO3_OPTIONAL)
		out, err := proto.Marshal(&pluginpb.CodeGeneratorResponse{SupportedFeatures: &features})
		if err != nil {
			return err
		}
		_, err = os.Stdout.Write(out)
		return err
	}
	req.FileToGenerate = kept
	filtered, err := proto.Marshal(req)
	if err != nil {
		return err
	}
	cmd := exec.Command(flag.Arg(0), flag.Args()[1:]...)
	cmd.Stdin = bytes.NewReader(filtered)
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	return cmd.Run()
}
